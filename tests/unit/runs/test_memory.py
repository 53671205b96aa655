"""Peak memory per run: a sweep's jobs share one process, so each run starts a new peak."""

import gc

import pytest
import torch

from lft.runs.memory import STATUS, peak_memory_mb, reset_peak_memory


def test_a_reset_forgets_an_earlier_peak():
    if not STATUS.exists():
        pytest.skip("no /proc (not Linux)")
    reset_peak_memory()
    big = torch.ones(256 * 2**20 // 4)  # 256 MiB, touched
    high = peak_memory_mb()["peak_rss_mb"]
    del big
    gc.collect()
    reset_peak_memory()
    assert peak_memory_mb()["peak_rss_mb"] < high - 128
