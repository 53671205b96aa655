"""KTO's unpaired rows: read from labelled files or split from pairs, encoded, and batched with mismatched pairs."""

import json

import pytest
import torch

from lft.config.errors import ConfigError
from lft.data.preference_pairs import PairEncoder
from lft.data.unpaired import encode_unpaired, load_unpaired_splits
from lft.models.loading import load_tokenizer
from lft.tasks.kto import KtoCollator

PROMPT = "\n\nHuman: what about {}?\n\nAssistant:"


def _write(folder, rows_by_split):
    for split, rows in rows_by_split.items():
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def _cfg(make_cfg, folder, *extra):
    return make_cfg("data=hh_rlhf_harmless", f"data.path={folder}", "data.preference.loss=kto", *extra)


def test_pairs_become_a_desirable_and_an_undesirable_row(make_cfg, tmp_path):
    pairs = [{"prompt": PROMPT.format(t), "chosen": f" i like {t}", "rejected": f" i hate {t}"} for t in "abc"]
    splits = load_unpaired_splits(_cfg(make_cfg, _write(tmp_path, {s: pairs for s in ("train", "test")})).data, 0)
    rows = splits["test"].to_list()
    assert len(rows) == 6
    assert rows[0] == {"prompt": PROMPT.format("a"), "completion": " i like a", "desirable": True}
    assert rows[1] == {"prompt": PROMPT.format("a"), "completion": " i hate a", "desirable": False}


def test_labelled_rows_are_read_as_written(make_cfg, tmp_path):
    rows = [{"prompt": PROMPT.format("tea"), "completion": " lovely", "label": True},
            {"prompt": PROMPT.format("rain"), "completion": " awful", "label": False},
            {"prompt": PROMPT.format("snow"), "completion": " fine", "label": None}]  # no label: dropped as read
    splits = load_unpaired_splits(_cfg(make_cfg, _write(tmp_path, {"train": rows * 20, "test": rows[:2]}),
                                       "data.max_bad_fraction=0.5").data, 0)
    assert splits["test"]["desirable"] == [True, False]
    assert splits["test"]["completion"] == [" lovely", " awful"]
    strings = [{**rows[0], "label": "true"}, {**rows[1], "label": "0"}]
    splits = load_unpaired_splits(_cfg(make_cfg, _write(tmp_path, {"train": strings * 20, "test": strings})).data, 0)
    assert splits["test"]["desirable"] == [True, False]


def test_a_label_that_is_not_a_yes_or_no_is_refused(make_cfg, tmp_path):
    rows = [{"prompt": PROMPT.format("tea"), "completion": " ok", "label": "maybe"}] * 4
    with pytest.raises(ConfigError, match=r"data.label_column='label': row 1 of the train split holds 'maybe'.*true "
                                          r"or false"):
        load_unpaired_splits(_cfg(make_cfg, _write(tmp_path, {"train": rows, "test": rows})).data, 0)


def test_empty_completions_are_counted_as_unusable_rows(make_cfg, tiny_llama, tmp_path):
    rows = [{"prompt": PROMPT.format("tea"), "completion": c, "label": True} for c in (" ok", " ", " fine", "")]
    folder = _write(tmp_path, {"train": rows, "validation": rows, "test": rows})
    cfg = _cfg(make_cfg, folder, f"model.name_or_path={tiny_llama}")
    encoder = PairEncoder(cfg.data, load_tokenizer(cfg.model), eos=True)
    with pytest.raises(ConfigError, match=r"2 of 4 train rows are unusable \(2 empty prompt or answer\).*"
                                          r"completion_column"):
        encode_unpaired(cfg.data, load_unpaired_splits(cfg.data, 0), encoder)


def test_collator_pairs_each_prompt_with_the_previous_rows_completion():
    features = [{"input_ids": [5, 6, 7, 8], "prompt_length": 2, "desirable": True},
                {"input_ids": [9, 10, 11], "prompt_length": 1, "desirable": False},
                {"input_ids": [12, 13, 14, 15, 16, 17], "prompt_length": 3, "desirable": True}]
    batch = KtoCollator(pad_id=0, max_length=5)(features)
    assert batch["desirable"].tolist() == [True, False, True]
    width = batch["kl_input_ids"].shape[1]
    assert width % 8 == 0 and batch["completion_input_ids"].shape[1] == width

    def row(name, i):
        mask = batch[f"{name}_attention_mask"][i].bool()
        return batch[f"{name}_input_ids"][i][mask].tolist(), batch[f"{name}_labels"][i][mask].tolist()

    assert row("completion", 0) == ([5, 6, 7, 8], [-100, -100, 7, 8])
    assert row("kl", 0) == ([5, 6, 15, 16, 17], [-100, -100, 15, 16, 17])  # the last row's completion, cut at 5
    assert row("kl", 1) == ([9, 7, 8], [-100, 7, 8])
    assert row("kl", 2) == ([12, 13, 14, 10, 11], [-100, -100, -100, 10, 11])
    assert torch.equal(batch["kl_labels"][:, -1], torch.full((3,), -100))  # padding never counts
