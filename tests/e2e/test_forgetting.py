"""forgetting=text: retention sets scored before the first step and after the last, matching lft.evaluate."""

import json
from pathlib import Path

import pytest

from lft.config.errors import ConfigError
from lft.evaluate import evaluate
from lft.train import train


@pytest.fixture(scope="module")
def text_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("retention") / "text.txt"
    path.write_text("\n".join(f"line {i}: the quick brown fox jumps over the lazy dog" for i in range(400)))
    return path


def _cfg(make_cfg, tiny_llama, pairs_data, text_file, *extra):
    return make_cfg("data=dialogsum", f"data.path={pairs_data}", f"model.name_or_path={tiny_llama}", "precision=fp32",
                    "data.max_source_length=64", "data.batch_size=4", "data.generate.val_samples=0",
                    "data.monitor.metric=val/loss", "data.monitor.mode=min", "optimizer.lr=5e-3", "test=false",
                    "forgetting=text", f"forgetting.retention.text.path={text_file}",
                    "forgetting.retention.text.test_size=60", "forgetting.retention.text.block_size=32", *extra)


def test_retention_before_and_after_match_a_direct_evaluation(make_cfg, tiny_llama, pairs_data, text_file):
    earlier_task = f"+forgetting.retention.dialogsum={{path: {pairs_data}, test_size: 4, max_source_length: 64}}"
    cfg = _cfg(make_cfg, tiny_llama, pairs_data, text_file, "callbacks=none", earlier_task)
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)
    sets = json.loads((run / "forgetting.json").read_text())
    assert {"rouge1", "perplexity"} <= set(sets["dialogsum"])  # an earlier task keeps its own metrics
    report = sets["text"]["perplexity"]
    assert report["change"] == pytest.approx(report["after"] - report["before"])
    assert report["after"] != report["before"]  # 4 steps at a high lr moved the weights
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["forgetting/text/perplexity_before"] == pytest.approx(report["before"])
    assert metrics["forgetting/text/perplexity_after"] == pytest.approx(report["after"])
    direct = {}
    for key, extra in (("before", []), ("after", [f"run={run}"])):
        ecfg = make_cfg("data=text", f"data.path={text_file}", "data.test_size=60", "data.block_size=32",
                        f"model.name_or_path={tiny_llama}", "precision=fp32", "trainer.limit_test_batches=100",
                        *extra, config="evaluate", out=f"eval_{key}")
        direct[key] = evaluate(ecfg)["perplexity"]
    assert report["before"] == pytest.approx(direct["before"], rel=1e-4)
    assert report["after"] == pytest.approx(direct["after"], rel=1e-4)


def test_a_retention_set_that_does_not_load_is_refused(make_cfg, tiny_llama, pairs_data, tmp_path):
    cfg = _cfg(make_cfg, tiny_llama, pairs_data, tmp_path / "missing.txt")
    with pytest.raises(ConfigError, match="forgetting.retention.text does not load: data.path="):
        train(cfg)
