"""Two DDP processes accumulating micro-batches equal one process with the whole batch (`python -m lft.train`)."""

import json
import os
import subprocess
import sys

import pytest
import torch

from lft.train import train
from tests.unit.training.test_token_weighting import LR, TOLERANCE, gradient_gap


@pytest.mark.slow  # DDP on the CPU runs by default in tests/e2e/test_scale.py; per-process counts in the unit tests
def test_two_ddp_processes_accumulating_equal_one_process_with_the_whole_batch(make_cfg, tmp_path, tiny_llama,
                                                                               uneven_pairs):
    """gloo DDP on the CPU, 2 processes x 2 rows x 2 accumulated micro-batches against one batch of 8 rows: every
    micro-batch holds a different number of tokens, and the epoch ends on a short window."""
    common = [f"model.name_or_path={tiny_llama}", "data=dialogsum", f"data.path={uneven_pairs}",
              "data.generate.val_samples=0", "data.monitor.metric=val/loss", "data.monitor.mode=min", "test=false",
              "data.group_by_length=false", "trainer.max_epochs=1", "trainer.limit_val_batches=1",
              "trainer.enable_progress_bar=false", "trainer.gradient_clip_val=null", "model.dropout=0.0",
              "precision=fp32", "optimizer=sgd", "optimizer.momentum=0.0", f"optimizer.lr={LR}", "scheduler=constant"]
    ddp = subprocess.run([sys.executable, "-m", "lft.train", *common, "trainer=ddp_cpu", "data.batch_size=2",
                          "trainer.accumulate_grad_batches=2", "hydra.run.dir=ddp"], cwd=tmp_path,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"}, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one = train(make_cfg(*common, "trainer=cpu", "data.batch_size=8", out="one"))  # in this process: quicker
    assert one["optimizer_steps"] == json.loads((tmp_path / "ddp" / "metrics.json").read_text())["optimizer_steps"] == 2
    a, b = (torch.load(tmp_path / r / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
            for r in ("ddp", "one"))
    assert gradient_gap(a, b) < TOLERANCE
