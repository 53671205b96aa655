"""Every strategy file trains through train(), and adalora's schedule follows the run."""

import json
import logging
from pathlib import Path

import pytest

from lft.config.errors import ConfigError
from lft.config.paths import CONFIG_DIR
from lft.train import train

STRATEGY_FILES = sorted(p.stem for p in (CONFIG_DIR / "strategy").glob("*.yaml"))


def strategy_overrides(name: str, tiny_teacher: str) -> list[str]:
    """What a strategy needs on top of tiny_bert (2 layers), beyond its file."""
    return {
        "freeze": ["strategy.freeze_bottom_layers=1"],
        "distill": [f"strategy.teacher={tiny_teacher}", "strategy.student_layer_step=2"],
    }.get(name, [])


def renamed_cache_argument() -> bool:
    """The installed transformers names BERT's cache argument `cache` (5.24 and later), not `past_key_values`."""
    import inspect

    from transformers import BertModel

    return "past_key_values" not in inspect.signature(BertModel.forward).parameters


@pytest.mark.parametrize("strategy", STRATEGY_FILES)
def test_every_strategy_file_trains(make_cfg, tiny_bert, tiny_bert_64, tiny_teacher, strategy, caplog):
    model = tiny_bert_64 if strategy == "qlora" else tiny_bert
    cfg = make_cfg(f"strategy={strategy}", f"model.name_or_path={model}",
                   *strategy_overrides(strategy, tiny_teacher))
    if strategy == "prefix_tuning" and renamed_cache_argument():
        # transformers >= 5.24: peft (<= 0.21) cannot feed prefixes to a classifier; lft says so before training.
        # Prefix tuning still trains decoders there: tests/unit/strategies/test_prefix_tuning_cache.py.
        with pytest.raises(ConfigError, match="strategy=prefix_tuning on a classification model needs transformers"):
            train(cfg)
        return
    with caplog.at_level(logging.INFO, logger="lft"):
        metrics = train(cfg)
    assert metrics["optimizer_steps"] == 4
    assert "trainable params:" in caplog.text  # every method reports what trains
    if strategy not in ("full", "distill"):
        assert 0 < metrics["trainable_params"] < metrics["total_params"]
    saved = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert saved["test/accuracy"] == metrics["test/accuracy"]  # the folder holds the figure the run returned


def test_adalora_schedule_follows_the_run(make_cfg, tiny_bert):
    cfg = make_cfg("strategy=adalora", f"model.name_or_path={tiny_bert}", "trainer.limit_train_batches=6",
                   "test=false")
    metrics = train(cfg)
    assert metrics["optimizer_steps"] == 6
    config = json.loads((Path(cfg.paths.output_dir) / "adapter" / "adapter_config.json").read_text())
    assert config["total_step"] == 6 and config["rank_pattern"]  # budget set at fit start, ranks allocated
