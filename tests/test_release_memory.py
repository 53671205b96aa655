"""ReleaseFreedMemory: on a glibc CPU, a freed large tensor leaves resident memory at once (its own mapping)."""

import subprocess
import sys

import pytest

from lft.callbacks.release_memory import _glibc

PROBE = """
import sys, torch
from types import SimpleNamespace
from lft.callbacks.release_memory import ReleaseFreedMemory

def rss_mb():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("RssAnon")) / 1024

big = torch.ones(5 * 2**20)
del big  # glibc raises its mmap threshold to 20 MB when this 20 MB block is freed
if sys.argv[1] == "on":
    ReleaseFreedMemory(mmap_threshold_mb=1).on_fit_start(None, SimpleNamespace(device=torch.device("cpu")))
keep = torch.ones(16)  # something live above the block, so the heap cannot simply shrink back
before = rss_mb()
block = torch.ones(2 * 2**20)  # 8 MB
keep2 = torch.ones(16)
del block
print(rss_mb() - before)
"""


@pytest.mark.skipif(_glibc() is None or not sys.platform.startswith("linux"), reason="glibc's allocator only")
def test_freed_large_tensors_leave_resident_memory():
    def held_after_free(mode: str) -> float:
        out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
        return float(out.stdout.split()[-1])

    assert held_after_free("off") > 6  # the 8 MB block stays in glibc's heap
    assert held_after_free("on") < 1  # with the callback it went back to the system
