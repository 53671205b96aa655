"""A tiny training run's console: the library messages lft knows to be expected are gone, genuine warnings stay."""

import os
import subprocess
import sys

EXPECTED_NOISE = ("LOAD REPORT", "`weights_only` was not set", "gemm_4bit_forward")


def test_a_tuned_run_prints_no_expected_noise_but_keeps_genuine_warnings(tmp_path, tiny_bert):
    # tune.batch_size=auto: Lightning's finder saves a temporary checkpoint (the weights_only note); tiny_bert is
    # a BertModel checkpoint, so the classifier lft builds on it is missing from it (the load report).
    result = subprocess.run(
        [sys.executable, "-m", "lft.train", f"model.name_or_path={tiny_bert}", "debug=limit", "trainer.limit_train_batches=2",
         "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "tune.batch_size=auto", "tune.max_batch_size=4",
         "tune.steps_per_trial=1", "trainer.enable_progress_bar=false", "hydra.run.dir=run"],
        cwd=tmp_path, env={**os.environ, "PYTHONUNBUFFERED": "1"}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    console = result.stdout + result.stderr
    assert not [noise for noise in EXPECTED_NOISE if noise in console], console[-3000:]
    # Lightning's note that 2 train batches log less often than log_every_n_steps: a user may act on it.
    assert "smaller than the logging interval" in result.stderr
    assert "tune/batch_size" in (tmp_path / "run" / "metrics.json").read_text(), "the finder did run"
