"""Tokenized splits cached under paths.cache_dir: a hit skips the tokenizer, any change to what shapes the rows
misses, label names inferred from data survive a hit, and data.cache=false writes nothing."""

import json
import logging
from pathlib import Path

import datasets
import pytest
from transformers import BertTokenizer

from lft.data.cache import ENTRY_FILE, FOLDER
from lft.data.fingerprint import encoding_key
from lft.models.loading import load_tokenizer
from lft.tasks import build_task
from lft.tasks import classification as classification_module

HIT = "Tokenized splits loaded from cache"


@pytest.fixture(autouse=True)
def without_datasets_map_cache():
    """datasets' own map cache can also spare the tokenizer on a second encode in one process; off, a second
    encode that misses lft's cache must call the tokenizer, so counting calls tells hits from misses."""
    datasets.disable_caching()
    yield
    datasets.enable_caching()


@pytest.fixture
def tokenizer_calls(monkeypatch) -> list:
    """Counts calls of the real tokenizer class every tiny fixture uses (MiniLM's WordPiece)."""
    calls = []
    original = BertTokenizer.__call__

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(BertTokenizer, "__call__", counting)
    return calls


@pytest.fixture
def reviews(tmp_path) -> Path:
    """A small local file of labelled reviews (labels as written: bad/good), editable by tests."""
    file = tmp_path / "data" / "reviews.jsonl"
    file.parent.mkdir()
    rows = [{"text": f"review {i} was {'awful' if i % 2 else 'great'}", "label": ["good", "bad"][i % 2]}
            for i in range(40)]
    file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return file


def encode(cfg):
    """What train() does before any weights load: (what the task encoded, its datamodule)."""
    encoded = build_task(cfg.data, cfg.model).encode(load_tokenizer(cfg.model), cfg.seed, cache_dir=cfg.paths.cache_dir)
    return encoded, encoded.datamodule


def entries(cfg) -> list[Path]:
    folder = Path(cfg.paths.cache_dir) / FOLDER
    return sorted(p for p in folder.iterdir() if (p / ENTRY_FILE).exists()) if folder.exists() else []


def contents(dm) -> dict:
    return {split: ds.to_dict() for split, ds in dm.splits.items()}


def test_second_encode_loads_from_cache_without_tokenizing(make_cfg, tiny_gpt2, pairs_data, tokenizer_calls, caplog):
    cfg = make_cfg("data=dialogsum", f"data.path={pairs_data}", f"model.name_or_path={tiny_gpt2}",
                   "data.max_source_length=64", "data.max_target_length=24")
    _, first = encode(cfg)
    assert tokenizer_calls and len(entries(cfg)) == 1
    tokenizer_calls.clear()
    with caplog.at_level(logging.INFO, logger="lft"):
        encoded, second = encode(cfg)
    assert not tokenizer_calls, "a hit must not tokenize the data"
    assert f"{HIT} {entries(cfg)[0]}" in caplog.text
    assert contents(second) == contents(first)
    assert {s: d._fingerprint for s, d in second.splits.items()} == {s: d._fingerprint for s, d in first.splits.items()}
    # What the task derives from config and tokenizer is rebuilt on a hit too.
    assert encoded.prompts is not None and encoded.generator is not None and encoded.generator.enabled


@pytest.mark.parametrize("change", [
    "data.template='Sum up: {dialogue}'",
    "data.max_source_length=48",
    "data.max_target_length=20",
    "data.chat_template=false",
    "data.train_size=10",
    "data.generate.val_samples=2",
    "data.long_targets=truncate",
    "seed=7",
])
def test_settings_that_shape_rows_change_the_key(make_cfg, tiny_gpt2, pairs_data, change):
    base = ("data=dialogsum", f"data.path={pairs_data}", f"model.name_or_path={tiny_gpt2}")
    tokenizer = load_tokenizer(make_cfg(*base).model)
    before, after = make_cfg(*base), make_cfg(*base, change)
    assert key(before, tokenizer) != key(after, tokenizer)


@pytest.mark.parametrize("change", [
    "data.batch_size=3", "data.eval_batch_size=5", "data.num_workers=1", "data.group_by_length=true",
    "data.generate.max_new_tokens=3", "data.generate.num_beams=2", "data.monitor.metric=val/loss",
    "trainer.max_epochs=5", "optimizer.lr=0.1",
])
def test_settings_that_only_batch_or_train_keep_the_key(make_cfg, tiny_gpt2, pairs_data, change):
    base = ("data=dialogsum", f"data.path={pairs_data}", f"model.name_or_path={tiny_gpt2}")
    tokenizer = load_tokenizer(make_cfg(*base).model)
    assert key(make_cfg(*base), tokenizer) == key(make_cfg(*base, change), tokenizer)


def key(cfg, tokenizer) -> str:
    return encoding_key("CausalLMTask", cfg.data, cfg.seed, tokenizer)[0]


def test_tokenizer_changes_change_the_key(make_cfg, tiny_gpt2, pairs_data):
    cfg = make_cfg("data=dialogsum", f"data.path={pairs_data}", f"model.name_or_path={tiny_gpt2}")
    tokenizer = load_tokenizer(cfg.model)
    reference = key(cfg, tokenizer)
    tokenizer("some text", truncation=True, max_length=5)  # rewrites the backend's truncation state only
    assert key(cfg, tokenizer) == reference
    changes = [
        lambda t: t.add_tokens(["brandnewword"]),
        lambda t: setattr(t, "chat_template", "{{ messages[0]['content'] }}"),
        lambda t: setattr(t, "eos_token", "[CLS]"),
        lambda t: setattr(t, "padding_side", "left"),
    ]
    for change in changes:
        changed = load_tokenizer(cfg.model)
        change(changed)
        assert key(cfg, changed) != reference


def test_edited_data_file_misses(make_cfg, tiny_bert, reviews, tokenizer_calls):
    cfg = make_cfg(f"model.name_or_path={tiny_bert}", f"data.path={reviews}", "data.label_names=[bad,good]")
    encode(cfg)
    with reviews.open("a") as f:
        f.write(json.dumps({"text": "one more review, quite good", "label": "good"}) + "\n")
    tokenizer_calls.clear()
    _, dm = encode(cfg)
    assert tokenizer_calls and len(entries(cfg)) == 2
    tokenizer = load_tokenizer(cfg.model)
    assert any("one more review" in tokenizer.decode(ids) for ds in dm.splits.values() for ids in ds["input_ids"])


def test_inferred_label_names_are_restored_on_a_hit(make_cfg, tiny_bert, reviews, monkeypatch, tokenizer_calls):
    cfg = make_cfg(f"model.name_or_path={tiny_bert}", f"data.path={reviews}", "data.label_names=null")
    first, _ = encode(cfg)
    assert first.label_names == ("bad", "good")

    def no_reading(*_):
        raise AssertionError("a hit must not read the data")

    monkeypatch.setattr(classification_module, "load_splits", no_reading)
    tokenizer_calls.clear()
    second, dm = encode(cfg)
    assert second.label_names == ("bad", "good") and not tokenizer_calls
    assert set(dm.splits["train"]["labels"]) == {0, 1}


def test_cache_false_never_writes(make_cfg, tiny_bert, reviews, tokenizer_calls):
    cfg = make_cfg(f"model.name_or_path={tiny_bert}", f"data.path={reviews}", "data.label_names=[bad,good]",
                   "data.cache=false")
    encode(cfg)
    tokenizer_calls.clear()
    encode(cfg)
    assert tokenizer_calls, "without the cache every encode tokenizes"
    assert not (Path(cfg.paths.cache_dir) / FOLDER).exists()


def test_a_damaged_entry_is_encoded_again(make_cfg, tiny_bert, reviews, tokenizer_calls, caplog):
    cfg = make_cfg(f"model.name_or_path={tiny_bert}", f"data.path={reviews}", "data.label_names=[bad,good]")
    _, first = encode(cfg)
    for arrow in (entries(cfg)[0] / "train").glob("*.arrow"):
        arrow.unlink()
    tokenizer_calls.clear()
    with caplog.at_level(logging.WARNING, logger="lft"):
        _, second = encode(cfg)
    assert "is unreadable" in caplog.text and tokenizer_calls
    assert contents(second) == contents(first) and len(entries(cfg)) == 1
