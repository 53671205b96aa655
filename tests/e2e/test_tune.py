"""tune.batch_size=auto and tune.lr=find: Lightning's finders run in train() on a tiny BERT, and what they found is
what the run trained with, what metrics.json and config.yaml say, and what a resume continues with."""

import csv
import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from lft.config.errors import ConfigError
from lft.runs.resume import resume_config
from lft.train import train

TRAIN_ROWS = 240  # the shipped sentiment sample's train split
# Every batch of an epoch (make_cfg caps limit_train_batches at 4 unless told), one lr logged per step.
WHOLE_EPOCH = ("trainer.limit_train_batches=1000", "trainer.log_every_n_steps=1")


def logged(run: Path, prefix: str) -> list[float]:
    """Values of the csv logger's first column named prefix*, in step order."""
    with (run / "csv" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    column = next(c for c in rows[0] if c.startswith(prefix))
    return [float(r[column]) for r in rows if r[column]]


def test_batch_size_finder_trains_with_the_found_size_and_resumes_with_it(make_cfg, tiny_bert):
    cfg = make_cfg(f"model.name_or_path={tiny_bert}", "tune.batch_size=auto", "tune.max_batch_size=48",
                   "tune.steps_per_trial=1", "data.batch_size=8", "scheduler.warmup_ratio=0", *WHOLE_EPOCH)
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)

    # Doubling from 8 passes 48 (CPU: nothing runs out of memory); the cap is what the run gets.
    assert metrics["tune/batch_size"] == 48
    assert json.loads((run / "metrics.json").read_text())["tune/batch_size"] == 48
    steps = math.ceil(TRAIN_ROWS / 48)
    assert metrics["optimizer_steps"] == steps and metrics["epochs"] == 1  # trial steps left no count behind
    # The linear schedule was rebuilt for 5 steps, not the 30 the configured batch size gives.
    lrs = logged(run, "lr-AdamW")
    assert lrs == pytest.approx([lrs[0] * (1 - k / steps) for k in range(steps)])
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["batch_size"] == 48 and saved["tune"]["batch_size"] is None
    assert not list(run.glob(".scale_batch_size_*")), "the finder's checkpoint is removed"
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == steps
    # the real validation, not a trial's, chose best.ckpt
    assert metrics["best_val/accuracy"] == pytest.approx(logged(run, "val/accuracy")[-1])

    # A resume takes the saved config: no finder runs again, the second epoch has 48 rows per batch too.
    resumed = train(resume_config(str(run), ["trainer.max_epochs=2"]))
    assert resumed["optimizer_steps"] == 2 * steps and "tune/batch_size" not in resumed


def test_lr_finder_plots_and_the_optimizer_uses_the_found_lr(make_cfg, tiny_bert):
    # 20 range-test steps over epochs of 4 batches (make_cfg's limit): the test spans epochs, the run has one.
    cfg = make_cfg(f"model.name_or_path={tiny_bert}", "tune.lr=find", "tune.num_training_steps=20", "data.batch_size=4",
                   "scheduler=constant", "trainer.log_every_n_steps=1")
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)

    lr = metrics["tune/lr"]
    assert math.isfinite(lr) and cfg.tune.min_lr < lr < cfg.tune.max_lr
    assert lr != pytest.approx(cfg.optimizer.lr)
    assert json.loads((run / "metrics.json").read_text())["tune/lr"] == lr
    # Every real step ran at the found lr (constant schedule: its base lr is the found one).
    assert logged(run, "lr-AdamW") == pytest.approx([lr] * 4)
    assert metrics["optimizer_steps"] == 4 and metrics["epochs"] == 1  # the range test's steps and epochs are gone
    plot = (run / "lr_find.png").read_bytes()
    assert plot.startswith(b"\x89PNG\r\n\x1a\n") and len(plot) > 1000
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["optimizer"]["lr"] == lr and saved["tune"]["lr"] is None


def test_both_finders_together(make_cfg, tiny_bert):
    cfg = make_cfg(f"model.name_or_path={tiny_bert}", "tune.batch_size=auto", "tune.max_batch_size=16",
                   "tune.steps_per_trial=1", "data.batch_size=4", "tune.lr=find", "tune.num_training_steps=13",
                   "scheduler=constant", "trainer.max_steps=2", *WHOLE_EPOCH)
    metrics = train(cfg)
    assert metrics["tune/batch_size"] == 16 and cfg.tune.min_lr < metrics["tune/lr"] < cfg.tune.max_lr
    assert logged(Path(cfg.paths.output_dir), "lr-AdamW") == pytest.approx([metrics["tune/lr"]] * 2)


def test_lr_finder_that_diverges_at_once_says_what_to_change(make_cfg, tiny_bert):
    # From lr=1 up the loss diverges within a few steps: no suggestion to take, and no run with a made-up lr.
    cfg = make_cfg(f"model.name_or_path={tiny_bert}", "tune.lr=find", "tune.min_lr=1", "tune.max_lr=1e4")
    with pytest.raises(ConfigError, match=r"tune\.lr=find: the range test stopped after \d steps .* lower tune\.max_lr"):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / "metrics.json").exists()


@pytest.mark.parametrize(("overrides", "match"), [
    (["tune.lr=auto"], r"tune\.lr='auto' must be find or null \(e\.g\. tune\.lr=find\)"),
    (["tune.batch_size=max"], r"tune\.batch_size='max' must be auto or null"),
    (["tune.mode=linear"], r"tune\.mode='linear' must be one of power, binsearch"),
    (["tune.num_training_steps=5"], r"tune\.num_training_steps=5 must be an integer >= 13"),
    (["+tune.max_lrs=1"], r"tune\.max_lrs is not a setting lft reads"),
    (["tune.lr=find", "tune.min_lr=0.1", "tune.max_lr=0.01"], r"tune\.min_lr=0\.1 must be below tune\.max_lr"),
    (["tune.batch_size=auto", "resume=/some/run"], r"tune\.batch_size=auto with resume=: a resumed run keeps"),
    (["tune.lr=find", "trainer=ddp_cpu"], r"tune\.lr=find runs on one device only .*DDP"),
    (["tune.lr=find", "trainer.devices=2"], r"runs on one device only"),
    (["tune.batch_size=auto", "debug=fast"], r"with trainer\.fast_dev_run \(debug=fast\)"),
], ids=["lr-auto", "batch-size-max", "mode", "too-few-lr-steps", "unknown-key", "min-above-max", "resume", "ddp",
        "two-devices", "fast-dev-run"])
def test_refusals_come_before_any_compute(make_cfg, tiny_bert, overrides, match):
    cfg = make_cfg(f"model.name_or_path={tiny_bert}", *overrides, fast=False)
    with pytest.raises(ConfigError, match=match) as refused:
        train(cfg)
    assert "\n" not in str(refused.value)
    assert not Path(cfg.paths.output_dir).exists(), "refused before the run folder is made"


def test_binsearch_keeps_lightnings_headroom_below_the_cap(make_cfg, tiny_bert):
    cfg = make_cfg(f"model.name_or_path={tiny_bert}", "tune.batch_size=auto", "tune.mode=binsearch",
                   "tune.max_batch_size=16", "tune.steps_per_trial=1", "data.batch_size=4")
    metrics = train(cfg)
    assert metrics["tune/batch_size"] == 15  # 4, 8 fit, 16 is the cap, minus Lightning's 5% margin
    assert yaml.safe_load((Path(cfg.paths.output_dir) / "config.yaml").read_text())["data"]["batch_size"] == 15
