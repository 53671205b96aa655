"""What a run cost beyond time: peak memory, reported in metrics.json and by the benchmarks."""

import resource
from pathlib import Path

import torch

STATUS, CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def reset_peak_memory() -> None:
    """Start a new peak: the jobs of a sweep run one after another in one process, and each reports its own."""
    try:
        CLEAR_REFS.write_text("5")  # Linux: resets VmHWM, the process's peak resident set
    except OSError:
        pass
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.reset_peak_memory_stats()


def peak_memory_mb() -> dict[str, float]:
    """Peak resident memory (MiB) since the last reset_peak_memory(), and peak GPU memory allocated by torch."""
    out = {"peak_rss_mb": round(peak_rss_kib() / 1024, 1)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def peak_rss_kib() -> int:
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # the process's lifetime peak (KiB on Linux)
