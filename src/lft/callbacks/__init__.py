"""Lightning callbacks lft adds to every run (conf/callbacks/default.yaml): each one concern."""

from lft.callbacks.checkpoints import AtomicModelCheckpoint, LastCheckpoint
from lft.callbacks.finite_loss import FiniteLossGuard, NonFiniteLossError
from lft.callbacks.plain_progress import PlainProgress
from lft.callbacks.release_memory import ReleaseFreedMemory
from lft.callbacks.rng_state import RngState

__all__ = ["AtomicModelCheckpoint", "FiniteLossGuard", "LastCheckpoint", "NonFiniteLossError", "PlainProgress",
           "ReleaseFreedMemory", "RngState"]
