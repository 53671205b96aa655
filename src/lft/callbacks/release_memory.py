"""Give freed host memory back to the system (glibc, CPU training).

glibc serves every allocation under its mmap threshold (raised on the fly up to 32 MB) from its heap and keeps
what is freed there, fragmented: a training step's activations are tensors of many sizes, so the heap grows
past what a step holds live, and batches of new lengths grow it further. The choices:

- `trim: never` (default): the heap is reused as it is. Trimming at the end of a batch did not lower the peak in
  the runs measured (SmolLM2 LoRA on DialogSum, 40 steps: 5.08 GiB either way) and it costs: the next batch
  page-faults the returned memory back in, 15% of a MiniLM LoRA step with length-grouped batches.
- `trim: within_step`: `malloc_trim(0)` after each transformer block's forward in training and before backward,
  where the peak is (the end of forward, all activations live): the holes the blocks' temporaries leave are
  returned as they appear, so the peak stays near what is live. Less memory for slower steps: SmolLM2 LoRA on
  Alpaca and MiniLM LoRA on IMDB 22% less peak RSS, 17% and up to 30% slower (bench/README.md).
- `trim: on_new_peak`: `malloc_trim(0)` after a batch that raised the process's peak resident memory by more
  than 2%, i.e. only when the heap grew. `trim: every_batch`: after each batch (about 10% of a MiniLM step).
- `mmap_threshold_mb`: tensors at least this large get their own mappings, returned the moment they are freed,
  so resident memory follows what is live, at the price of page faults on every such tensor (SmolLM2 LoRA on
  DialogSum, 40 steps: 4.7 GiB instead of 5.1 GiB with 4, 9% slower steps; 1: 1.4x the step time, MiniLM 2x).

A no-op where the C library is not glibc or training runs on a GPU.
"""

import ctypes
import ctypes.util
import resource

import torch
from lightning.pytorch.callbacks import Callback

from lft.models.blocks import transformer_blocks

M_MMAP_THRESHOLD = -3  # mallopt parameter (malloc.h)
PEAK_MARGIN = 1.02


class _MallInfo2(ctypes.Structure):  # struct mallinfo2 (malloc.h, glibc >= 2.33)
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _glibc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:  # not glibc (macOS, musl)
        return None
    if not (hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt")):
        return None
    if hasattr(libc, "mallinfo2"):
        libc.mallinfo2.restype = _MallInfo2
    return libc


PAGE = resource.getpagesize()


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


def _unused_resident_bytes(libc) -> float:
    """Resident bytes not held by live allocations (plus a constant: code, Python, ...): what a trim could give
    back, measured as resident memory minus glibc's bytes in use (mallinfo2, glibc >= 2.33; else infinite)."""
    if not hasattr(libc, "mallinfo2"):
        return float("inf")
    info = libc.mallinfo2()
    return _resident_bytes() - info.uordblks - info.hblkhd


class ReleaseFreedMemory(Callback):
    TRIM = ("never", "within_step", "on_new_peak", "every_batch")

    def __init__(self, trim: str = "never", max_free_mb: float = 256, mmap_threshold_mb: float | None = None):
        if trim not in self.TRIM:
            raise ValueError(f"callbacks.release_memory.trim={trim!r}: use one of {', '.join(self.TRIM)}.")
        if max_free_mb < 0:
            raise ValueError(f"callbacks.release_memory.max_free_mb={max_free_mb}: use 0 (trim at every block) or more.")
        self.libc = _glibc()
        self.trim = trim
        self.max_free = max_free_mb * 2**20
        self.mmap_threshold_mb = mmap_threshold_mb
        self._peak = 0
        self._baseline = 0.0
        self._hooks = []

    def _active(self, pl_module) -> bool:
        return self.libc is not None and pl_module.device.type == "cpu"

    def on_fit_start(self, trainer, pl_module) -> None:
        if not self._active(pl_module):
            return
        if self.mmap_threshold_mb:
            self.libc.mallopt(M_MMAP_THRESHOLD, int(self.mmap_threshold_mb * 2**20))
        if self.trim == "within_step":
            self.libc.malloc_trim(0)
            self._baseline = _unused_resident_bytes(self.libc)  # what no trim gives back: code, Python objects, ...
            self._hooks = [block.register_forward_hook(self._after_block) for block in transformer_blocks(pl_module)]

    def on_fit_end(self, trainer, pl_module) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    def _trim_if_much_is_free(self) -> None:
        if _unused_resident_bytes(self.libc) > self._baseline + self.max_free:
            self.libc.malloc_trim(0)

    def _after_block(self, block, args, output) -> None:
        if block.training and torch.is_grad_enabled():
            self._trim_if_much_is_free()

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        if self.trim == "within_step" and self._active(pl_module):
            self._trim_if_much_is_free()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self._active(pl_module) or self.trim not in ("on_new_peak", "every_batch"):
            return
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # one system call
        # A margin: a step right after a trim refills the heap to about the old peak, and must not trim again.
        if self.trim == "every_batch" or peak > self._peak * PEAK_MARGIN:
            self.libc.malloc_trim(0)
            self._peak = peak
