"""Packing and compiled blocks through train(): packed runs match unpacked ones, refusals, compile=true trains."""

import pytest

from lft.config.errors import ConfigError
from lft.train import train


def test_training_with_packing_runs_and_matches_the_unpacked_run(make_cfg, pairs_data, tiny_llama):
    def run(packing: str, out: str):
        cfg = make_cfg("data=dialogsum", f"data.path={pairs_data}", f"model.name_or_path={tiny_llama}",
                       "data.max_source_length=64", "data.max_target_length=24", "data.batch_size=4",
                       "data.generate.val_samples=0", "data.monitor.metric=val/loss", "data.monitor.mode=min", "precision=fp32", "model.dropout=0.0",
                       f"data.packing={packing}", out=out)
        return train(cfg)

    packed, plain = run("true", "packed"), run("false", "plain")
    assert packed["optimizer_steps"] == plain["optimizer_steps"] == 4
    assert packed["val/loss"] == pytest.approx(plain["val/loss"], abs=1e-4)  # same rows, same updates


def test_packing_is_refused_for_classification(make_cfg, tiny_bert):
    cfg = make_cfg(f"model.name_or_path={tiny_bert}", "+data.packing=true")
    with pytest.raises(ConfigError, match="data.packing=true packs text for decoder-only LMs"):
        train(cfg)


def test_compile_true_compiles_each_block_and_trains(make_cfg, pairs_data, tiny_llama):
    cfg = make_cfg("data=dialogsum", f"data.path={pairs_data}", f"model.name_or_path={tiny_llama}",
                   "data.max_source_length=32", "data.max_target_length=24", "data.batch_size=4",
                   "data.generate.val_samples=0", "data.monitor.metric=val/loss", "data.monitor.mode=min",
                   "strategy=lora", "compile=true", "test=false")
    metrics = train(cfg)
    assert metrics["optimizer_steps"] == 4 and metrics["train/loss"] == metrics["train/loss"]  # finite, not nan
