"""logger=mlflow with MLflow's real local store (SQLite): a run's config as params, its final metrics (metrics.json)
and its weights folder as an artifact; a sweep's jobs as runs of one experiment, named and tagged by overrides."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from lft.train import train


def runs_of(store: str, experiment: str) -> list:
    client = MlflowClient(tracking_uri=store)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, [e.name for e in client.search_experiments()]
    return sorted(client.search_runs([found.experiment_id]), key=lambda r: r.info.run_name)


def artifacts(store: str, run, folder: str) -> set[str]:
    return {Path(a.path).name for a in MlflowClient(tracking_uri=store).list_artifacts(run.info.run_id, folder)}


def test_a_run_logs_its_config_final_metrics_and_weights_to_the_local_store(make_cfg, tiny_bert, tmp_path):
    cfg = make_cfg("logger=mlflow", f"model.name_or_path={tiny_bert}", f"logger.mlflow.store_dir={tmp_path}/mlflow")
    metrics = train(cfg)
    assert (tmp_path / "mlflow" / "artifacts" / "train").is_dir(), "artifacts beside the database"
    store = f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    (run,) = runs_of(store, "train")  # a single run: the task name is the experiment
    assert run.info.status == "FINISHED"
    assert run.data.params["optimizer/lr"] == str(cfg.optimizer.lr)
    assert run.data.params["model/name_or_path"] == tiny_bert
    for key in ("test/accuracy", "best_val/accuracy", "optimizer_steps", "fit_seconds", "trainable_params"):
        assert run.data.metrics[key] == metrics[key], key
    assert {"config.json", "model.safetensors"} <= artifacts(store, run, "model"), "the full fine-tune's weights"


@pytest.mark.slow  # two jobs in a subprocess, and a fresh SQLite store to create: ~35 s of CPU
def test_sweep_jobs_are_runs_of_one_experiment_with_their_overrides(tmp_path, tiny_bert):
    store, sweep = f"sqlite:///{tmp_path}/elsewhere.db", tmp_path / "sweep"
    overrides = ["-m", "logger=mlflow", f"model.name_or_path={tiny_bert}", "strategy=lora", "optimizer.lr=1e-3,2e-3",
                 "debug=limit", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
                 "trainer.limit_test_batches=1", "trainer.enable_progress_bar=false", "callbacks=none",
                 f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": store}  # honoured over the default store
    result = subprocess.run([sys.executable, "-m", "lft.train", *overrides], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert not (tmp_path / "outputs" / "mlflow").exists(), "nothing in the default store"

    runs = runs_of(store, "train-sweep")  # one experiment per sweep: task name + sweep folder name
    assert [r.info.run_name for r in runs] == ["0 optimizer.lr=0.001", "1 optimizer.lr=0.002"]
    for job, run, lr in zip(("0", "1"), runs, ("0.001", "0.002"), strict=True):
        assert run.data.params["optimizer/lr"] == lr, "the override among the params"
        assert f"optimizer.lr={lr}" in run.data.tags["overrides"] and "strategy=lora" in run.data.tags["overrides"]
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert run.data.metrics["test/accuracy"] == metrics["test/accuracy"]
        assert run.data.metrics["optimizer_steps"] == metrics["optimizer_steps"] == 2
        assert "adapter_model.safetensors" in artifacts(store, run, "adapter")
