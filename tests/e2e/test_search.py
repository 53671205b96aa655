"""hparams_search=random|optuna on a tiny model: lft's sweeper (hydra/sweeper=lft) runs Optuna >= 4 with the study in
a journal file, so a killed search resumes without touching earlier jobs; bad spaces stop before any trial runs;
failing trials are recorded FAIL and the search goes on."""

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from tests.e2e.test_cli import run_cli
from tests.e2e.test_sweep_report import FAST
from tests.unit.sweeper.test_space import states


def load_study(sweep):
    storage = JournalStorage(JournalFileBackend(str(sweep / "study.journal")))
    return optuna.load_study(study_name="train", storage=storage)


def job_folders(sweep) -> list[str]:
    return sorted((p.name for p in sweep.iterdir() if p.is_dir() and p.name.isdigit()), key=int)


@pytest.mark.parametrize("search, extra", [("random", ()), ("optuna", ("hydra.sweeper.n_startup_trials=1",))])
def test_search_runs_its_trials_into_a_journal(tmp_path, tiny_bert, search, extra):
    sweep = tmp_path / "sweep"
    result = run_cli(f"hparams_search={search}", "hydra.sweeper.n_trials=3", *extra, f"model.name_or_path={tiny_bert}",
                     *FAST, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert job_folders(sweep) == ["0", "1", "2"]
    study = load_study(sweep)
    assert states(study) == ["COMPLETE"] * 3
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE  # val/accuracy: monitor.mode=max
    for t in study.trials:
        assert t.user_attrs["job_dir"] == str(sweep / str(t.number))
        metrics = json.loads((sweep / str(t.number) / "metrics.json").read_text())
        assert t.value == pytest.approx(metrics["val/accuracy"])
        config = OmegaConf.load(sweep / str(t.number) / "config.yaml")
        assert config.optimizer.lr == pytest.approx(t.params["optimizer.lr"])  # the trial's values reach the job
        assert config.data.batch_size == t.params["data.batch_size"]
    if search == "optuna":  # the LoRA space: target_modules lists travel as override text
        assert {t.params["strategy.target_modules"] for t in study.trials} <= {None, "[query,key,value]",
                                                                                "[query,key,value,dense]"}
        assert all(OmegaConf.load(sweep / str(t.number) / "config.yaml").strategy.r == t.params["strategy.r"]
                   for t in study.trials)
    best = json.loads((sweep / "best.json").read_text())
    assert best["trials"] == {"complete": 3} and best["best"]["value"] == study.best_value
    assert best["best"]["job_dir"] == str(sweep / str(study.best_trial.number))


@pytest.mark.slow  # two launches (~30 s); tests/unit/sweeper/test_space.py counts a resumed journal's jobs
def test_killed_search_resumes_with_the_same_command(tmp_path, tiny_bert):
    sweep = tmp_path / "sweep"
    command = [sys.executable, "-m", "lft.train", "hparams_search=random", "hydra.sweeper.n_trials=4",
               f"model.name_or_path={tiny_bert}", *FAST, f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with (tmp_path / "first.log").open("w") as log:
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        # Kill once 2 jobs finished and the third has started (its folder exists), so it is caught mid-run.
        deadline = time.monotonic() + 240
        while not (len(list(sweep.glob("*/metrics.json"))) >= 2 and (sweep / "2").is_dir()) \
                and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    finished = {p.parent.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sweep.glob("*/metrics.json")}
    assert len(finished) == 2, (tmp_path / "first.log").read_text()[-3000:]

    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    study = load_study(sweep)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 4, states(study)
    for t in study.trials:  # only trials the kill interrupted are FAIL, and they are marked so
        assert t.state.name == "COMPLETE" or t.user_attrs.get("interrupted"), (t.number, t.state, t.user_attrs)
    interrupted = [t for t in study.trials if t.user_attrs.get("interrupted")]
    assert [t.number for t in interrupted] == [2] and states(study) == ["COMPLETE"] * 2 + ["FAIL"] + ["COMPLETE"] * 2
    assert "interrupted" in interrupted[0].user_attrs["error"]
    assert json.loads((sweep / "2" / "failed.json").read_text())["type"] == "Interrupted"  # lft.report: failed
    assert job_folders(sweep) == ["0", "1", "2", "3", "4"]
    # One job folder per trial, named by its number: new jobs came after the earlier ones, none was rewritten.
    assert set(job_folders(sweep)) <= {str(t.number) for t in study.trials}
    assert {p.parent.name for p in sweep.glob("*/metrics.json")} == {str(t.number) for t in complete}
    for name, (content, mtime) in finished.items():
        path = sweep / name / "metrics.json"
        assert path.read_bytes() == content and path.stat().st_mtime_ns == mtime, f"job {name} was overwritten"
    assert "trials to run" in output
    best = json.loads((sweep / "best.json").read_text())
    assert best["trials"]["complete"] == 4

    # The same command once more: the budget is spent, nothing runs.
    again = run_cli(*command[3:], cwd=tmp_path)
    assert again.returncode == 0 and "0 of 4 trials to run" in again.stdout + again.stderr
    assert len(load_study(sweep).trials) == len(study.trials)


def test_failing_trials_are_recorded_and_the_search_goes_on(tmp_path, tiny_bert):
    # lr=1e30 passes the config checks and diverges at the first step: the job writes failed.json, returns None.
    sweep = tmp_path / "sweep"
    result = run_cli("hparams_search=random", "hydra.sweeper.n_trials=4",
                     "+hydra.sweeper.params.optimizer.lr={type:categorical,choices:[1e-3,1e30]}",
                     "data.batch_size=8",  # held on the command line: not searched
                     f"model.name_or_path={tiny_bert}", *FAST, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    study = load_study(sweep)
    assert len(study.trials) == 4 and job_folders(sweep) == ["0", "1", "2", "3"]
    for t in study.trials:
        assert "data.batch_size" not in t.params and "data.batch_size=8" in t.user_attrs["overrides"]
        if t.params["optimizer.lr"] == 1e30:
            assert t.state.name == "FAIL"
            assert t.user_attrs["error"].startswith("NonFiniteLossError: train/loss is nan"), t.user_attrs
            assert (sweep / str(t.number) / "failed.json").exists()
        else:
            assert t.state.name == "COMPLETE"
    assert {"FAIL", "COMPLETE"} <= set(states(study)), "the seeded draw has both lrs"
    best = json.loads((sweep / "best.json").read_text())
    assert best["best"]["params"]["optimizer.lr"] == 1e-3 and best["trials"]["fail"] >= 1


@pytest.mark.slow  # a launch to see one refusal; the space checks themselves: tests/unit/sweeper/test_space.py
def test_bad_space_is_refused_before_any_trial(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("hparams_search=random", "+hydra.sweeper.params.optimizer.lr={type:float,low:0.1,high:0.001}",
                     f"hydra.sweep.dir={sweep}", cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert "Error: hydra.sweeper.params.optimizer.lr: low=0.1 is above high=0.001." in result.stderr
    assert result.stderr.count("Error") == 1 and "Traceback" not in result.stderr
    assert not sweep.exists()

    (sweep / "0").mkdir(parents=True)  # a grid sweep's job: a search here would number its trials into it
    result = run_cli("hparams_search=random", f"hydra.sweep.dir={sweep}", cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and "holds job folders (0) that are no trials of" in result.stderr
    assert not (sweep / "study.journal").exists()


def test_pruner_stops_lagging_trials(tmp_path, tiny_bert):
    # Three validations per job; the median pruner (after 1 trial) stops a trial whose val/loss lags at a step.
    sweep = tmp_path / "sweep"
    result = run_cli("hparams_search=random", "hydra.sweeper.n_trials=4",
                     "hydra.sweeper.pruner={type:median,n_startup_trials:1}",
                     "+hydra.sweeper.params.optimizer.lr={type:categorical,choices:[3e-3,1e-7]}",
                     "monitor.metric=val/loss", "monitor.mode=min", "data.batch_size=8", f"model.name_or_path={tiny_bert}",
                     *FAST, "trainer.limit_train_batches=6", "trainer.val_check_interval=2", f"hydra.sweep.dir={sweep}",
                     cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    study = load_study(sweep)
    assert len(study.trials) == 4 and study.direction == optuna.study.StudyDirection.MINIMIZE
    assert all(t.intermediate_values for t in study.trials), "every validation reported to its trial"
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    assert pruned and "COMPLETE" in states(study), states(study)
    for t in pruned:
        assert json.loads((sweep / str(t.number) / "failed.json").read_text())["type"] == "TrialPruned"
        assert not (sweep / str(t.number) / "metrics.json").exists()
    assert "pruned at optimizer step" in output and "Traceback" not in output
    assert json.loads((sweep / "best.json").read_text())["trials"]["pruned"] == len(pruned)


@pytest.mark.slow
def test_search_launches_through_hydras_configured_launcher(tmp_path, tiny_bert):
    # submitit_local: two trials per batch (n_jobs=2), each in its own process, as on SLURM with submitit_slurm.
    sweep = tmp_path / "sweep"
    result = run_cli("hparams_search=random", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2",
                     "hydra/launcher=submitit_local", f"model.name_or_path={tiny_bert}", *FAST,
                     f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert states(load_study(sweep)) == ["COMPLETE"] * 2 and job_folders(sweep) == ["0", "1"]
    assert (sweep / ".submitit").is_dir()
