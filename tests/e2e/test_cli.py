"""The command line as a user meets it: error messages, DDP on CPU, wandb offline, real MiniLM on IMDB."""

import json
import os
import subprocess
import sys
from pathlib import Path

from lft.train import train
from tests.conftest import shared_data
from tests.wandb_log import finished_run_records


def run_cli(*overrides: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "lft.train", *overrides], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_bad_data_path_exits_with_one_clear_message(tmp_path):
    result = run_cli("data.path=/no/such/folder", cwd=tmp_path)
    assert result.returncode == 2
    assert "data.path='/no/such/folder' does not exist" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("outputs/train/runs/*/checkpoints")), "nothing trained"


def test_misspelled_strategy_lists_choices(tmp_path):
    result = run_cli("strategy=lorra", cwd=tmp_path)
    assert result.returncode != 0
    assert "Available options in 'strategy'" in result.stderr


def test_ddp_on_two_cpu_processes_writes_one_run_folder(tmp_path, tiny_bert):
    result = run_cli("trainer=ddp_cpu", f"model.name_or_path={tiny_bert}", "debug=limit",
                     "trainer.enable_progress_bar=false", "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "GLOBAL_RANK: 1" in result.stderr + result.stdout
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["optimizer_steps"] == 5 and "test/accuracy" in metrics
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"], "ranks share one run folder"


def test_wandb_offline_run_keeps_metrics(make_cfg, tiny_bert):
    cfg = make_cfg("logger=wandb", f"model.name_or_path={tiny_bert}")
    train(cfg)
    records = finished_run_records(Path(cfg.paths.output_dir))
    items = [item for r in records for item in (r.history.item if r.HasField("history") else r.summary.update)]
    logged = {item.key or "/".join(item.nested_key) for item in items}
    assert {"val/accuracy", "val/loss", "test/accuracy"} <= logged, sorted(logged)


def test_packaged_minilm_learns_on_real_imdb_slice(make_cfg):
    imdb = shared_data("imdb")
    cfg = make_cfg("data=imdb", f"data.path={imdb}", "data.train_size=96", "data.val_size=32",
                   "data.test_size=64", "data.max_length=128", "trainer.limit_train_batches=6",
                   "trainer.limit_val_batches=1", "trainer.limit_test_batches=2")
    metrics = train(cfg)
    assert metrics["optimizer_steps"] == 6
    assert metrics["train/loss"] < 1.0


def test_ag_news_config_trains_four_topics_from_the_shared_slice(make_cfg, tiny_bert):
    ag_news = shared_data("ag_news")
    cfg = make_cfg("data=ag_news", f"data.path={ag_news}", f"model.name_or_path={tiny_bert}", "data.train_size=64",
                   "data.val_size=16", "data.test_size=32", "data.max_length=32")
    metrics = train(cfg)
    assert metrics["optimizer_steps"] == 4
    assert (Path(cfg.paths.output_dir) / "model" / "config.json").read_text().count("Sci/Tech") == 2  # id2label, label2id
