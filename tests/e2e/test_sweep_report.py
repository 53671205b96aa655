"""A real Hydra multirun on a tiny model with failing jobs: the sweep goes on, failures are recorded in failed.json,
and lft.report lists every job. Single runs keep their exit codes."""

import csv
import json

from lft.report import main as report
from tests.e2e.test_cli import run_cli

FAST = ("debug=limit", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
        "trainer.enable_progress_bar=false", "test=false", "callbacks=none")


def test_grid_with_failing_jobs_finishes_and_reports_every_job(tmp_path, tiny_bert):
    # 2x2 grid: lr=1e30 passes the config checks and diverges at the first step (NonFiniteLossError); the missing
    # model folder fails while loading. Only job 0 trains to the end.
    sweep = tmp_path / "sweep"
    result = run_cli("-m", f"model.name_or_path={tiny_bert},{tmp_path}/no_such_model", "optimizer.lr=1e-3,1e30",
                     "trainer.max_epochs=2", *FAST, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1", "2", "3"], "every job ran"
    assert "the sweep goes on" in output

    assert (sweep / "0" / "metrics.json").exists() and not (sweep / "0" / "failed.json").exists()
    diverged = json.loads((sweep / "1" / "failed.json").read_text())
    assert diverged["type"] == "NonFiniteLossError" and "train/loss is nan" in diverged["error"]
    assert "Traceback" in diverged["traceback"] or "File " in diverged["traceback"]
    for job in ("2", "3"):
        failure = json.loads((sweep / job / "failed.json").read_text())
        assert failure["type"] == "ConfigError" and "no_such_model" in failure["error"], failure

    report([str(sweep)])
    md = (sweep / "report.md").read_text()
    assert "Common:" in md and "trainer.max_epochs=2" in md.split("| run |")[0]
    with (sweep / "report.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    assert rows[0]["state"] == "finished" and rows[0]["optimizer.lr"] == "0.001"
    assert [r["state"] for r in rows[1:]] == ["failed"] * 3
    assert any(r["error"].startswith("NonFiniteLossError: train/loss is nan") for r in rows)
    assert sum(r["error"].startswith("ConfigError: model.name_or_path=") for r in rows) == 2
    assert "| failed |" in md and "NonFiniteLossError" in md
    assert (sweep / "report_curves.png").stat().st_size > 5000
    assert (sweep / "report_params.png").stat().st_size > 5000


def test_single_run_keeps_its_exit_code_and_writes_no_failed_json(tmp_path, tiny_bert):
    result = run_cli(f"model.name_or_path={tiny_bert}", "optimizer.lr=1e30", *FAST, "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 3, (result.stdout + result.stderr)[-3000:]
    assert "train/loss is nan" in result.stdout + result.stderr
    assert not (tmp_path / "run" / "failed.json").exists()
