"""lft's Lightning callbacks, each one concern: those conf/callbacks/*.yaml name (exported here), and those train()
adds as a run needs them (finders, fidelity_check, trial_pruning) or a config group names (forgetting)."""

from lft.callbacks.checkpoints import AtomicModelCheckpoint, LastCheckpoint
from lft.callbacks.finite_loss import FiniteLossGuard, NonFiniteLossError
from lft.callbacks.plain_progress import PlainProgress
from lft.callbacks.release_memory import ReleaseFreedMemory
from lft.callbacks.rng_state import RngState

__all__ = ["AtomicModelCheckpoint", "FiniteLossGuard", "LastCheckpoint", "NonFiniteLossError", "PlainProgress",
           "ReleaseFreedMemory", "RngState"]
