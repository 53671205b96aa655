"""Give freed host memory back to the system after every training batch (glibc, CPU training).

Batches of different lengths allocate tensors of different sizes; glibc keeps what they free in its heap,
fragmented, and the next batch's tensors often do not fit the holes, so resident memory keeps growing with
memory nobody uses. `malloc_trim(0)` after each batch returns those pages, so the peak is close to what one
batch really needs. A no-op where the C library is not glibc or training runs on a GPU.
"""

import ctypes
import ctypes.util

from lightning.pytorch.callbacks import Callback


def _glibc_malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        return None


class ReleaseFreedMemory(Callback):
    def __init__(self):
        self.trim = _glibc_malloc_trim()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.trim is not None and pl_module.device.type == "cpu":
            self.trim(0)
