"""Progress lines a batch job's log file can show: the bar draws only on a terminal, these print elsewhere."""

import logging
import sys
import time

from lightning.pytorch.callbacks import Callback

from lft.callbacks.checkpoints import crossed

log = logging.getLogger("lft")


class PlainProgress(Callback):
    def __init__(self, every_n_steps: int = 10, only_without_terminal: bool = True):
        self.every_n_steps = every_n_steps
        self.active = not (only_without_terminal and sys.stderr.isatty())
        self._start = self._samples = None
        self._step_before = 0

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


def _clock(seconds: float) -> str:
    if seconds != seconds:  # nan: no rate yet
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
