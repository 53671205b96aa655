"""Progress lines a batch job's log file can show: the bar draws only on a terminal, these print elsewhere.

Training prints every `every_n_steps` optimizer steps; validation and test print at most every `eval_every_s`
seconds, so a short evaluation stays quiet and an hour of generating 500 summaries does not look hung."""

import logging
import math
import sys
import time

from lightning.pytorch.callbacks import Callback

from lft.callbacks.checkpoints import crossed

log = logging.getLogger("lft")


class PlainProgress(Callback):
    def __init__(self, every_n_steps: int = 10, only_without_terminal: bool = True, eval_every_s: float = 60.0):
        self.every_n_steps = every_n_steps
        self.eval_every_s = eval_every_s
        self.active = not (only_without_terminal and sys.stderr.isatty())
        self._start = self._samples = None
        self._step_before = 0
        self._eval_start = self._eval_last = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        self._start, self._samples, self._start_step = time.perf_counter(), 0, trainer.global_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._step_before = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.active or self._start is None:
            return
        self._samples += len(next(iter(batch.values()))) * trainer.world_size
        step = trainer.global_step
        # crossed: online RL's batches make several optimizer steps (callbacks/checkpoints.py)
        if (trainer.fit_loop._should_accumulate() or not crossed(self._step_before, step, self.every_n_steps)
                or not trainer.is_global_zero):
            return
        elapsed = time.perf_counter() - self._start
        total = pl_module.total_steps() if hasattr(pl_module, "total_steps") else int(trainer.estimated_stepping_batches)
        rate = (step - self._start_step) / elapsed if elapsed else 0.0
        eta = (total - step) / rate if rate else float("nan")
        loss = trainer.callback_metrics.get("train/loss")
        log.info("step %d/%d  epoch %d  loss %s  %.1f samples/s  elapsed %s  ETA %s", step, total,
                 trainer.current_epoch, f"{float(loss):.4f}" if loss is not None else "-",
                 self._samples / elapsed if elapsed else 0.0, _clock(elapsed), _clock(eta))

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._eval_start = self._eval_last = time.perf_counter()

    on_test_epoch_start = on_validation_epoch_start

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self._eval_progress(trainer, "validation", trainer.num_val_batches[dataloader_idx], batch_idx)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._eval_progress(trainer, "test", trainer.num_test_batches[dataloader_idx], batch_idx)

    def _eval_progress(self, trainer, split: str, total: int | float, batch_idx: int) -> None:
        now, done = time.perf_counter(), batch_idx + 1
        if (not self.active or not trainer.is_global_zero or done >= total
                or now - self._eval_last < self.eval_every_s):
            return
        self._eval_last = now
        elapsed = now - self._eval_start
        # Rows that generate come first (lft.generation.generator.generation_order): the ETA errs long.
        log.info("%s batch %d/%s  elapsed %s  ETA %s", split, done, total, _clock(elapsed),
                 _clock(elapsed / done * (total - done)))


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):  # no rate yet, or a loader of unknown length
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
