"""Checkpoints that survive crashes: written to a temporary name, then renamed over the old one.

AtomicModelCheckpoint is Lightning's best-checkpoint callback with that change, choosing the best when validation
ends. LastCheckpoint keeps `last.ckpt` fresh for `resume=`: every `every_n_steps` optimizer steps, after every
validation, and when a scheduler asks the job to stop (SIGTERM, or SIGUSR1 outside SLURM, where Lightning requeues
on its own).

"Every n steps" means every batch whose optimizer steps cross a multiple of n: online RL makes several steps per
batch (rl.ppo_epochs x minibatches, tasks/rl.py), so global_step can step over a multiple that `step % n == 0`
would wait for; with one step per batch the two agree.

A resume equals the uninterrupted run only if `last.ckpt` is a state the run passed through whole. So after a
validation it is written last of all callbacks, holding that validation's best checkpoint and early-stopping
updates (written before them, a resume forgot the best and wrote `best-v1.ckpt`), and never just before a
validation: Lightning resumes past a validation that was due when the checkpoint was taken, so the resumed run
would skip it.
"""

import logging
import os
import shutil
import signal
import time
from pathlib import Path

from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lft.runs.layout import LAST_CHECKPOINT

log = logging.getLogger("lft")


def save_atomically(trainer, path: Path) -> None:
    """trainer.save_checkpoint to `path.tmp`, then rename: a crash mid-write leaves the old checkpoint intact."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    trainer.save_checkpoint(tmp, weights_only=False)  # the whole state (optimizer, callbacks, loops), for resume
    trainer.strategy.barrier()
    if trainer.is_global_zero:
        if tmp.is_dir():  # sharded engines (DeepSpeed) write a folder; os.replace cannot replace a full one
            old = path.with_name(path.name + ".old")
            if path.exists():
                path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    trainer.strategy.barrier()


def crossed(before: int, after: int, every: int) -> bool:
    """Whether the optimizer steps (before, after] of one batch include a multiple of `every` (module docstring)."""
    return every > 0 and after // every > before // every


class AtomicModelCheckpoint(ModelCheckpoint):
    def __init__(self, *args, save_on_train_epoch_end: bool | None = False, **kwargs):
        # False: the best is chosen when validation ends, where LastCheckpoint saves next. Lightning's default
        # (None) waits for the epoch's end when validation runs once per epoch, after last.ckpt was written.
        super().__init__(*args, save_on_train_epoch_end=save_on_train_epoch_end, **kwargs)
        self._step_before = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._step_before = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        every = self._every_n_train_steps
        if pl_module.automatic_optimization or every < 1:
            return super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        # Online RL (manual optimization): Lightning's branch for it saves only where global_step lands on a
        # multiple of every_n_train_steps, and warns of a pre-step copy of the weights that lft does not keep
        # (a batch's rollout and updates are one whole). Save where the batch crossed a multiple instead.
        if not crossed(self._step_before, trainer.global_step, every) or self._should_skip_saving_checkpoint(trainer):
            return
        candidates = self._monitor_candidates(trainer)
        if self.monitor is not None and self.monitor not in candidates:  # before the first validation
            self._defer_save_until_validation = True
            return
        self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)
        self._last_time_checked = time.monotonic()

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        tmp = filepath + ".tmp"
        super()._save_checkpoint(trainer, tmp)
        if trainer.is_global_zero:
            os.replace(tmp, filepath)
        trainer.strategy.barrier()
        self._last_checkpoint_saved = filepath

    def load_state_dict(self, state_dict: dict) -> None:
        # A run folder moved or copied since: its saved paths follow it (Lightning would keep only the stale best
        # path, forget the scores and take the next validation as the best).
        old, new = state_dict.get("dirpath"), self.dirpath
        if old and new and old != new:
            def moved(path):
                return new + path[len(old):] if isinstance(path, str) and path.startswith(old + os.sep) else path

            state_dict = {k: moved(v) for k, v in state_dict.items()} | {"dirpath": new}
            state_dict["best_k_models"] = {moved(p): s for p, s in state_dict.get("best_k_models", {}).items()}
        super().load_state_dict(state_dict)


class LastCheckpoint(Checkpoint):
    def __init__(self, dirpath: str, every_n_steps: int = 50, on_validation: bool = True, on_preemption: bool = True):
        self.path = Path(dirpath) / LAST_CHECKPOINT
        self.every_n_steps = every_n_steps
        self.on_validation = on_validation
        self.on_preemption = on_preemption
        self._saved_step = -1
        self._step_before = 0  # global_step when the current batch started

    def save(self, trainer, why: str, again: bool = False) -> None:
        """again: write even if this step was saved (a validation since then changed callback states)."""
        if trainer.sanity_checking or (trainer.global_step == self._saved_step and not again):
            return
        save_atomically(trainer, self.path)
        self._saved_step = trainer.global_step
        log.info("Saved %s at optimizer step %d (%s).", self.path, trainer.global_step, why)

    def setup(self, trainer, pl_module, stage: str) -> None:
        # Last of all callbacks: after a validation, every other one (the best checkpoint, early stopping) has
        # updated its state for it before last.ckpt records them. (A new list: Lightning is iterating the old one.)
        trainer.callbacks = [c for c in trainer.callbacks if c is not self] + [self]
        # SIGUSR1 ends a process by default; treat it as SIGTERM unless SLURM's requeue handler owns it.
        if self.on_preemption and stage == "fit" and not SLURMEnvironment.detect():
            signal.signal(signal.SIGUSR1, lambda *_: setattr(trainer._signal_connector, "received_sigterm", True))

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.global_step > 0:  # a fresh run starts at 0: this is a resume; its log says what came back
            batches = trainer.fit_loop.epoch_loop.batch_progress.current.processed
            log.info("Resumed from %s: optimizer step %d, epoch %d after %d of its batches; weights, optimizer, "
                     "LR schedule, RNG, data position and callback states restored.", self.path,
                     trainer.global_step, trainer.current_epoch, batches)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._step_before = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.fit_loop._should_accumulate():  # mid-accumulation: gradients would be lost
            return
        if validation_follows(trainer):  # saved after it instead (a signal keeps the previous checkpoint)
            return
        if self.on_preemption and trainer.received_sigterm:
            self.save(trainer, "stop requested by a signal")
        elif crossed(self._step_before, trainer.global_step, self.every_n_steps):
            self.save(trainer, f"every {self.every_n_steps} steps")

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.on_validation and trainer.state.fn == "fit" and not trainer.fit_loop._should_accumulate():
            self.save(trainer, "after validation", again=True)

    def on_exception(self, trainer, pl_module, exception) -> None:
        # Lightning stops at the end of the batch a signal arrived in. Mid-accumulation or mid-validation the
        # state is not a finished step: keep the last checkpoint instead.
        if not (self.on_preemption and isinstance(exception, SIGTERMException)):
            return
        if trainer.validating or trainer.fit_loop._should_accumulate():
            log.warning("Stopped by a signal mid-step; %s (step %d) is the point to resume from.", self.path,
                        self._saved_step)
        else:
            self.save(trainer, "stop requested by a signal")

    def state_dict(self) -> dict:
        return {"saved_step": self._saved_step}

    def load_state_dict(self, state_dict: dict) -> None:
        self._saved_step = state_dict.get("saved_step", -1)


def validation_follows(trainer) -> bool:
    """Whether Lightning validates right after this training batch (its own test, asked a little earlier)."""
    epoch_loop = trainer.fit_loop.epoch_loop
    return epoch_loop._should_check_val_fx(trainer.fit_loop._data_fetcher)
