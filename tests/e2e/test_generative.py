"""End-to-end runs of train() on tiny random T5/BART/GPT-2/Llama models: every strategy, generation metrics."""

import json
from pathlib import Path

import pytest

from lft.train import train

GEN_KEYS = ("test/rouge1", "test/rouge2", "test/rougeL", "test/bleu", "test/perplexity")


def _pairs_cfg(make_cfg, model_path, pairs_data, *extra):
    return make_cfg("data=dialogsum", f"data.path={pairs_data}", f"model.name_or_path={model_path}",
                    "data.max_source_length=64", "data.max_target_length=24", "data.batch_size=4",
                    "data.eval_batch_size=4", *extra)


@pytest.mark.parametrize("strategy", ["full", "lora", "freeze"])
@pytest.mark.parametrize("model", ["tiny_t5", "tiny_gpt2"])
def test_generative_strategies(make_cfg, pairs_data, request, model, strategy):
    extra = ["strategy.freeze_bottom_layers=1"] if strategy == "freeze" else []
    cfg = _pairs_cfg(make_cfg, request.getfixturevalue(model), pairs_data, f"strategy={strategy}", *extra)
    metrics = train(cfg)
    for key in GEN_KEYS:
        assert key in metrics, sorted(metrics)
    assert metrics["test/perplexity"] > 1.0
    assert metrics["optimizer_steps"] == 4
    run = Path(cfg.paths.output_dir)
    assert (run / ("model" if strategy != "lora" else "adapter")).is_dir()
    assert "best_val/rouge1" in json.loads((run / "metrics.json").read_text())
    samples = list((run / "csv" / "samples").glob("val_step*.csv"))
    assert samples and "prediction" in samples[0].read_text()


@pytest.mark.parametrize("model", ["tiny_bart", "tiny_llama"])
def test_other_architectures_train_with_lora(make_cfg, pairs_data, request, model):
    cfg = _pairs_cfg(make_cfg, request.getfixturevalue(model), pairs_data, "strategy=lora")
    metrics = train(cfg)
    assert "test/rougeL" in metrics and metrics["trainable_params"] < metrics["total_params"]
