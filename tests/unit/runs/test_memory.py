"""Peak memory per run: a sweep's jobs share one process, so each run starts a new peak."""

import mmap

import pytest

from lft.runs.memory import STATUS, peak_memory_mb, reset_peak_memory


def test_a_reset_forgets_an_earlier_peak():
    if not STATUS.exists():
        pytest.skip("no /proc (not Linux)")
    reset_peak_memory()
    # An anonymous mapping, not a tensor: closing it returns the pages to the system whatever the allocator
    # (a tensor's memory may stay with the process, which made this test flaky in a busy xdist worker).
    big = mmap.mmap(-1, 256 * 2**20)
    for page in range(0, len(big), mmap.PAGESIZE):
        big[page] = 1  # touched: resident
    high = peak_memory_mb()["peak_rss_mb"]
    big.close()
    reset_peak_memory()
    assert peak_memory_mb()["peak_rss_mb"] < high - 128
