"""Never lose a run: kill-and-resume equality from the command line, SIGTERM, atomic checkpoints, guards."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lft.config.errors import ConfigError
from lft.runs.resume import resume_config
from lft.train import train
from tests.unit.runs.test_targets import fake_run

# 15 batches of 16 per epoch on the shipped sample; dropout on, so the RNG state must be restored too.
RUN = ["trainer.max_epochs=2", "trainer.limit_val_batches=2", "trainer.limit_test_batches=2",
       "trainer.enable_progress_bar=false", "callbacks.last_checkpoint.every_n_steps=4", "data.max_length=32"]


def start_cli(*overrides: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "lft.train", *overrides], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, timeout: int = 300) -> str:
    out, _ = proc.communicate(timeout=timeout)
    return out


def stop_after_first_checkpoint(proc: subprocess.Popen, run: Path, sig: int) -> None:
    """Send `sig` as soon as checkpoints/last.ckpt exists (step 4, mid-epoch 0)."""
    deadline = time.time() + 240
    while not (run / "checkpoints" / "last.ckpt").exists():
        assert proc.poll() is None, finish(proc)[-3000:]
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    proc.send_signal(sig)


def trainable_weights(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


def assert_same_weights(resumed: Path, reference: Path) -> None:
    a, b = trainable_weights(resumed), trainable_weights(reference)
    assert a.keys() == b.keys() and len(a) > 0
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= 1e-6, f"weights differ by {worst}"


def assert_same_run(resumed: Path, reference: Path) -> None:
    assert_same_weights(resumed, reference)
    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (resumed, reference))
    assert ma["optimizer_steps"] == mb["optimizer_steps"] == 30
    for key in ("val/loss", "test/loss", "test/accuracy", "train/loss"):
        assert ma[key] == pytest.approx(mb[key], abs=1e-6), key


@pytest.fixture(scope="module")
def reference_runs(tmp_path_factory, tiny_bert):
    """Uninterrupted runs, full and LoRA, started together (subprocesses) to share the wait."""
    cwd = tmp_path_factory.mktemp("reference")
    procs = {s: start_cli(f"strategy={s}", f"model.name_or_path={tiny_bert}", *RUN, f"hydra.run.dir={s}", cwd=cwd)
             for s in ("full", "lora")}
    for proc in procs.values():
        out = finish(proc)
        assert proc.returncode == 0, out[-3000:]
    return {s: cwd / s for s in procs}


# One strategy in the default run (a kill-and-resume through the CLI takes ~20 s); both under `make test-slow`.
@pytest.mark.parametrize("strategy", [pytest.param("full", marks=pytest.mark.slow), "lora"])
def test_sigkill_then_resume_equals_uninterrupted(tmp_path, tiny_bert, reference_runs, strategy):
    args = [f"strategy={strategy}", f"model.name_or_path={tiny_bert}", *RUN]
    proc = start_cli(*args, "hydra.run.dir=run", cwd=tmp_path)
    stop_after_first_checkpoint(proc, tmp_path / "run", signal.SIGKILL)
    finish(proc)
    assert not (tmp_path / "run" / "metrics.json").exists()

    resumed = start_cli("resume=run", cwd=tmp_path)
    out = finish(resumed)
    assert resumed.returncode == 0, out[-3000:]
    assert "Resumed from" in out and "optimizer step 4, epoch 0 after 4 of its batches" in out
    assert "not resumable" not in out  # Lightning knows the training loader resumes mid-epoch
    assert list((tmp_path / "run" / "resumes").glob("*/train.log")), "the resume logs inside the run folder"
    assert_same_run(tmp_path / "run", reference_runs[strategy])
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["fit_seconds_total"] > metrics["fit_seconds"]  # the first segment's clock came with the checkpoint


# SIGUSR1 (Slurm's warning signal) takes the SIGTERM path; test_slurm_requeue_continues_the_jobs_own_run runs Slurm's.
@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGUSR1, marks=pytest.mark.slow)],
                         ids=["SIGTERM", "SIGUSR1"])
def test_preemption_signal_writes_a_checkpoint_that_resumes(tmp_path, tiny_bert, reference_runs, sig):
    proc = start_cli("strategy=full", f"model.name_or_path={tiny_bert}", *RUN, "hydra.run.dir=run", cwd=tmp_path)
    stop_after_first_checkpoint(proc, tmp_path / "run", sig)
    out = finish(proc)
    assert proc.returncode == 143, out[-3000:]
    assert "Stopped by a signal" in out and "resume=" in out
    assert "Traceback" not in out
    resumed = start_cli("resume=run", cwd=tmp_path)
    out = finish(resumed)
    assert resumed.returncode == 0, out[-3000:]
    assert_same_run(tmp_path / "run", reference_runs["full"])


def test_resume_refuses_result_changing_overrides_and_non_runs(make_cfg, tiny_bert, tmp_path):
    cfg = make_cfg(f"model.name_or_path={tiny_bert}", "trainer.limit_train_batches=2",
                   "callbacks.last_checkpoint.every_n_steps=1")
    train(cfg)
    run = cfg.paths.output_dir
    with pytest.raises(ConfigError, match="would change the resumed run's result"):
        resume_config(run, ["resume=x", "optimizer.lr=0.1", "trainer.max_epochs=3"])
    with pytest.raises(ConfigError, match="already finished"):
        resume_config(run, [])
    longer = resume_config(run, ["trainer.max_epochs=2"])
    assert longer.trainer.max_epochs == 2 and longer.optimizer.lr == cfg.optimizer.lr
    with pytest.raises(ConfigError, match="not an lft run folder"):
        resume_config(str(tmp_path), [])


def test_train_longer_continues_a_finished_run(make_cfg, tiny_bert):
    cfg = make_cfg(f"model.name_or_path={tiny_bert}", "trainer.limit_train_batches=2")
    train(cfg)
    metrics = train(resume_config(cfg.paths.output_dir, ["trainer.max_epochs=2"]))
    assert metrics["optimizer_steps"] == 4 and metrics["resumed"]


def test_a_run_killed_after_its_last_step_resumes_to_its_results(make_cfg, tiny_bert):
    # Killed while testing or saving: last.ckpt holds the final step, metrics.json is missing. The resume trains
    # nothing and writes the results, its clock the first segment's training time.
    cfg = make_cfg(f"model.name_or_path={tiny_bert}", "trainer.limit_train_batches=2")
    first = train(cfg)
    (Path(cfg.paths.output_dir) / "metrics.json").unlink()
    metrics = train(resume_config(cfg.paths.output_dir, []))
    assert metrics["optimizer_steps"] == first["optimizer_steps"] == 2 and metrics["resumed"]
    assert metrics["test/accuracy"] == first["test/accuracy"]
    assert 0 < metrics["fit_seconds_total"] - metrics["fit_seconds"] <= first["fit_seconds"]


def test_a_run_folder_is_never_overwritten(make_cfg, tiny_bert, tmp_path):
    cfg = make_cfg(f"model.name_or_path={tiny_bert}")
    train(cfg)
    before = (Path(cfg.paths.output_dir) / "metrics.json").read_text()
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="already holds a run"):
        train(cfg)
    assert time.perf_counter() - start < 5
    assert (Path(cfg.paths.output_dir) / "metrics.json").read_text() == before


def test_cli_refuses_a_used_run_folder_before_hydra_writes(tmp_path, tiny_bert):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("seed: 1\n")
    proc = start_cli(f"model.name_or_path={tiny_bert}", "hydra.run.dir=run", cwd=tmp_path)
    out = finish(proc)
    assert proc.returncode == 2 and "already holds a run" in out and "Traceback" not in out
    assert not (tmp_path / "run" / ".hydra").exists()


def test_unwritable_run_folder_fails_before_loading(make_cfg, tiny_bert, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    cfg = make_cfg(f"model.name_or_path={tiny_bert}")
    cfg.paths.output_dir = str(blocker / "run")
    with pytest.raises(ConfigError, match="cannot be written"):
        train(cfg)


def test_non_finite_loss_stops_naming_the_step(make_cfg, tiny_bert):
    from lft.callbacks import NonFiniteLossError

    cfg = make_cfg(f"model.name_or_path={tiny_bert}", "optimizer.lr=1e12", "trainer.gradient_clip_val=null",
                   "scheduler=constant", "trainer.limit_train_batches=15", "callbacks.last_checkpoint.every_n_steps=1")
    with pytest.raises(NonFiniteLossError, match=r"at optimizer step \d+ .*last good checkpoint is .*last.ckpt"):
        train(cfg)
    ckpt = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values()), "the kept checkpoint is good"
    assert not (Path(cfg.paths.output_dir) / "metrics.json").exists()


def test_length_grouped_batches_train_and_resume_settings_run(make_cfg, tiny_bert):
    cfg = make_cfg(f"model.name_or_path={tiny_bert}", "data.group_by_length=true",
                   "callbacks.last_checkpoint.every_n_steps=0")
    metrics = train(cfg)
    assert metrics["optimizer_steps"] == 4
    assert (Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt").exists(), "saved after validation"


def test_callbacks_none_runs_to_the_end(make_cfg, tiny_bert):
    cfg = make_cfg("callbacks=none", f"model.name_or_path={tiny_bert}")
    metrics = train(cfg)
    assert "test/accuracy" in metrics
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


def test_plain_progress_lines_without_a_terminal(make_cfg, tiny_bert, caplog):
    import logging

    cfg = make_cfg(f"model.name_or_path={tiny_bert}", "trainer.log_every_n_steps=2")
    with caplog.at_level(logging.INFO, logger="lft"):
        train(cfg)
    lines = [r.message for r in caplog.records if r.message.startswith("step ")]
    assert lines and "step 2/4" in lines[0] and "samples/s" in lines[0] and "ETA" in lines[0]


def test_evaluation_progress_lines_are_timed(make_cfg, tiny_bert, caplog):
    """Validation and test print a line at most every eval_every_s seconds (0: every batch but the last)."""
    import logging

    from lft.recipes.evaluate import evaluate

    cfg = make_cfg(f"model.name_or_path={tiny_bert}", "data.eval_batch_size=2", "callbacks.plain_progress.eval_every_s=0")
    with caplog.at_level(logging.INFO, logger="lft"):
        train(cfg)
    test_lines = [r.message for r in caplog.records if r.message.startswith("test batch ")]
    done, total = zip(*(map(int, line.split()[2].split("/")) for line in test_lines), strict=True)
    assert list(done) == list(range(1, total[0])) and "ETA" in test_lines[0]  # every batch but the last
    assert any(r.message.startswith("validation batch ") for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lft"):
        evaluate(cfg)  # lft.evaluate's own trainer reads the same setting
    assert any(r.message.startswith("test batch 1/") for r in caplog.records)
    cfg.callbacks.plain_progress.eval_every_s = 3600
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lft"):
        evaluate(cfg)
    assert not any(" batch " in r.message for r in caplog.records)


def test_slurm_requeue_continues_the_jobs_own_run(tmp_path, tiny_bert, monkeypatch):
    """A preempted SLURM job reruns its command: the run folder is named after the job, so it continues."""
    monkeypatch.setenv("SLURM_JOB_ID", "777")
    args = ["strategy=full", f"model.name_or_path={tiny_bert}", *RUN]
    run = tmp_path / "outputs" / "train" / "runs" / "slurm-777"
    proc = start_cli(*args, cwd=tmp_path)
    stop_after_first_checkpoint(proc, run, signal.SIGTERM)
    assert finish(proc) and proc.returncode == 143
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    again = start_cli(*args, cwd=tmp_path)
    out = finish(again)
    assert again.returncode == 0, out[-3000:]
    assert "SLURM requeue" in out and json.loads((run / "metrics.json").read_text())["resumed"]


def test_a_crash_while_writing_keeps_the_previous_checkpoint(make_cfg, tiny_bert, tmp_path):
    import lightning as L

    from lft.callbacks.checkpoints import save_atomically

    cfg = make_cfg(f"model.name_or_path={tiny_bert}", "trainer.limit_train_batches=2")
    train(cfg)
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    before = last.read_bytes()

    class CrashMidWrite(L.Trainer):  # the process dies after writing part of the new checkpoint
        def save_checkpoint(self, filepath, weights_only=False, storage_options=None):
            Path(filepath).write_bytes(b"half a checkpoint")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        save_atomically(CrashMidWrite(logger=False, enable_progress_bar=False), last)
    assert last.read_bytes() == before
    torch.load(last, weights_only=True)  # still a whole checkpoint


def test_training_longer_equals_training_that_long_from_the_start(make_cfg, tiny_bert, tmp_path):
    """A run resumed at an epoch's end trains the next epoch on that epoch's own order (not the last one's)."""
    args = [f"model.name_or_path={tiny_bert}", "scheduler=constant", "model.dropout=0.0"]
    straight = make_cfg(*args, out="straight")
    straight.trainer.max_epochs = 2  # make_cfg caps runs at one epoch
    train(straight)
    short = make_cfg(*args, out="short")
    train(short)
    metrics = train(resume_config(short.paths.output_dir, ["trainer.max_epochs=2"]))
    assert metrics["optimizer_steps"] == 8
    assert_same_weights(Path(short.paths.output_dir), Path(straight.paths.output_dir))


# --- killed right after an after-validation checkpoint --------------------------------------------------------
# RUN with last.ckpt only after validations (every_n_steps=0: the same result), so it first appears at step 15.
AFTER_VALIDATION = [*(a for a in RUN if "every_n_steps" not in a), "callbacks.last_checkpoint.every_n_steps=0"]


def adapter_weights(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(run / "adapter" / "adapter_model.safetensors")


@pytest.mark.slow  # a second kill-and-resume launch; the best checkpoint's rule runs in-process below
def test_sigkill_after_validation_then_resume_keeps_the_best_checkpoint(tmp_path, tiny_bert, reference_runs):
    """last.ckpt after a validation holds that validation's best: resumed (from a moved folder), the run tests and
    exports that one, as the uninterrupted run does."""
    killed = start_cli("strategy=lora", f"model.name_or_path={tiny_bert}", *AFTER_VALIDATION, "hydra.run.dir=run",
                       cwd=tmp_path)
    stop_after_first_checkpoint(killed, tmp_path / "run", signal.SIGKILL)
    finish(killed)
    run, ref = (tmp_path / "run").rename(tmp_path / "moved"), reference_runs["lora"]  # its paths follow the folder
    resumed = start_cli(f"resume={run.name}", cwd=tmp_path)
    out = finish(resumed)
    assert resumed.returncode == 0, out[-3000:]
    assert "optimizer step 15, epoch 0 after 15 of its batches" in out, "resumed from the after-validation checkpoint"

    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"], "no best-v1.ckpt"
    assert sorted(p.name for p in (ref / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    best = [torch.load(r / "checkpoints" / "best.ckpt", weights_only=True) for r in (run, ref)]
    assert best[0]["global_step"] == best[1]["global_step"], "the same validation chose the best"
    assert all((best[0]["state_dict"][k] - v).abs().max() <= 1e-6 for k, v in best[1]["state_dict"].items())
    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (run, ref))
    scored = [k for k in mb if k.startswith(("best_", "test/"))]
    assert len(scored) >= 3, scored
    for key in scored:
        assert ma[key] == pytest.approx(mb[key], abs=1e-6), key
    a, b = adapter_weights(run), adapter_weights(ref)
    assert a.keys() == b.keys() and len(a) > 0
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6, "the exported adapter is the same"


def test_last_checkpoint_after_a_validation_holds_its_best_whatever_the_callback_order(make_cfg, tiny_bert, caplog):
    import logging

    from omegaconf import open_dict

    cfg = make_cfg(f"model.name_or_path={tiny_bert}", "callbacks.last_checkpoint.every_n_steps=2")
    with open_dict(cfg):  # last_checkpoint declared first: it still saves after the best checkpoint's update
        cfg.callbacks = {"last_checkpoint": cfg.callbacks.last_checkpoint,
                         **{k: v for k, v in cfg.callbacks.items() if k != "last_checkpoint"}}
    with caplog.at_level(logging.INFO, logger="lft"):
        metrics = train(cfg)
    saves = [r.message.split(" at ")[-1] for r in caplog.records if r.message.startswith("Saved")]
    # step 4 ends the epoch: saved after its validation only, not also just before it
    assert saves == ["optimizer step 2 (every 2 steps).", "optimizer step 4 (after validation)."], saves
    callbacks = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"]
    best = next(v for k, v in callbacks.items() if k.startswith("AtomicModelCheckpoint"))
    assert best["best_model_path"].endswith("best.ckpt")
    assert float(best["best_model_score"]) == metrics[f"best_{cfg.monitor.metric}"]


# --- a run folder is data, not code -----------------------------------------------------------------------------
def test_resume_refuses_a_foreign_target_before_anything_loads(tmp_path, make_cfg, tiny_bert):
    """{_target_: logging.FileHandler, mode: w} in a run folder's config would create or truncate any file."""
    victim = tmp_path / "victim.txt"
    run = fake_run(make_cfg, tiny_bert, **{"callbacks.log_file": {"_target_": "logging.FileHandler",
                                                                  "filename": str(victim), "mode": "w"}})
    proc = start_cli(f"resume={run}", cwd=tmp_path)
    out = finish(proc)
    assert proc.returncode == 2, out[-3000:]
    assert ("callbacks.log_file._target_=logging.FileHandler is not a target lft builds from a run folder's "
            "config.yaml") in out and "adding trust_targets=[logging.FileHandler] to the command" in out, out[-3000:]
    assert "Traceback" not in out and "Restoring states" not in out
    assert not victim.exists()


def test_a_checkpoint_that_would_run_code_is_refused(make_cfg, tiny_bert, tmp_path):
    """Checkpoints are read with weights_only=True: one holding a pickled call (open(path, 'w')) does not run it."""
    marker = tmp_path / "created_by_unpickling"

    class OpensAFile:
        def __reduce__(self):
            return open, (str(marker), "w")

    run = fake_run(make_cfg, tiny_bert)
    last = run / "checkpoints" / "last.ckpt"
    torch.save({"state_dict": {}, "payload": OpensAFile()}, last)
    with pytest.raises(ConfigError, match="holds objects other than tensors and plain data"):
        train(resume_config(str(run), []))
    assert not marker.exists()
    torch.load(last, weights_only=False)  # the test's own check: unpickled in full, it does run
    assert marker.exists()
