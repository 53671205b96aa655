"""What a run cost beyond time: peak memory, reported in metrics.json and by the benchmarks."""

import resource

import torch


def peak_memory_mb() -> dict[str, float]:
    """Peak resident memory of this process (MiB), and peak GPU memory allocated by torch on a GPU."""
    out = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}  # Linux: KiB
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out
