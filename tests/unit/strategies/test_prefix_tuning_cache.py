"""Prefix tuning across transformers' rename of the models' cache argument (`past_key_values` before 5.24, `cache`
from 5.24 on): a decoder trains on the learned prefix and generates from it either way; a classifier trains where
peft can feed it (transformers < 5.24) and is refused with one message where it cannot."""

import inspect
import json
from pathlib import Path

import pytest
from transformers import BertModel

from lft.config.errors import ConfigError
from lft.train import train

CACHE_RENAMED = "cache" in inspect.signature(BertModel.forward).parameters  # transformers >= 5.24


def test_a_decoder_trains_and_generates_with_prefix_tuning(make_cfg, pairs_data, tiny_llama):
    cfg = make_cfg(f"model.name_or_path={tiny_llama}", "strategy=prefix_tuning", "trainer.limit_train_batches=2",
                   "data=dialogsum", f"data.path={pairs_data}", "data.max_source_length=48", "data.max_target_length=16",
                   "data.batch_size=4", "data.eval_batch_size=4")
    metrics = train(cfg)
    assert metrics["optimizer_steps"] == 2 and 0.0 <= metrics["test/rouge1"] <= 1.0  # generated from the prefix
    adapter = json.loads((Path(cfg.paths.output_dir) / "adapter" / "adapter_config.json").read_text())
    assert adapter["peft_type"] == "PREFIX_TUNING"


def test_a_classifier_with_prefix_tuning_trains_or_is_refused_by_version(make_cfg, tiny_bert):
    cfg = make_cfg(f"model.name_or_path={tiny_bert}", "strategy=prefix_tuning", "trainer.limit_train_batches=2")
    if CACHE_RENAMED:
        with pytest.raises(ConfigError, match=r"strategy=prefix_tuning on a classification model needs transformers "
                                              r"< 5\.24.*strategy=prompt_tuning"):
            train(cfg)
        assert not (Path(cfg.paths.output_dir) / "checkpoints").exists(), "refused before training"
    else:
        assert train(cfg)["optimizer_steps"] == 2
