"""wandb in a Hydra multirun: each job is its own offline wandb run, grouped by the sweep, tagged with its
overrides, named by job number + varying overrides, with the final metrics in its summary."""

import json

from lft.training.loggers import TAG_LENGTH
from tests.e2e.test_cli import run_cli
from tests.e2e.test_sweep_report import FAST
from tests.wandb_log import finished_run_records


def run_info(run_dir) -> dict:
    """group, tags, name and the final summary of the one offline wandb run in a job folder."""
    info = {"summary": {}}
    for record in finished_run_records(run_dir):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            info.update(group=record.run.run_group, tags=list(record.run.tags), name=record.run.display_name)
        elif kind == "summary":
            info["summary"].update({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                                    for item in record.summary.update})
    return info


def test_grid_jobs_are_grouped_tagged_and_summarized_wandb_runs(tmp_path, tiny_bert):
    sweep = tmp_path / "sweep"
    result = run_cli("-m", "logger=wandb", f"model.name_or_path={tiny_bert}", "optimizer.lr=1e-3,2e-3",
                     *[o for o in FAST if o != "test=false"], "trainer.max_epochs=1", f"hydra.sweep.dir={sweep}",
                     cwd=tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    jobs = [run_info(sweep / job) for job in ("0", "1")]

    assert jobs[0]["group"] == jobs[1]["group"] == "train-sweep", "one group per sweep: task name + sweep folder"
    assert "optimizer.lr=0.001" in jobs[0]["tags"] and "optimizer.lr=0.002" in jobs[1]["tags"]
    assert f"model.name_or_path={tiny_bert}"[:TAG_LENGTH] in jobs[0]["tags"], "every override of the job is a tag"
    assert not any(t.startswith("hydra") for t in jobs[0]["tags"])
    assert [j["name"] for j in jobs] == ["0 optimizer.lr=0.001", "1 optimizer.lr=0.002"], "number + varying only"
    for job, info in zip(("0", "1"), jobs, strict=True):
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert info["summary"]["test/accuracy"] == metrics["test/accuracy"]
        assert info["summary"]["optimizer_steps"] == metrics["optimizer_steps"] == 3


def test_single_run_keeps_the_task_name_and_gets_a_summary(make_cfg, tiny_bert):
    from pathlib import Path

    from lft.train import train

    cfg = make_cfg("logger=wandb", f"model.name_or_path={tiny_bert}")
    metrics = train(cfg)
    info = run_info(Path(cfg.paths.output_dir))
    assert info["name"] == "train" and info["group"] == "" and info["tags"] == []
    assert info["summary"]["test/accuracy"] == metrics["test/accuracy"]
