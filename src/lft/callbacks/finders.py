"""`tune.batch_size=auto` and `tune.lr=find`: Lightning's BatchSizeFinder and LearningRateFinder, run when fit starts.

Both finders run trial steps, then restore the weights, optimizer and loop state from a checkpoint they write
(and delete) in the run folder; during trials the run's own callbacks and loggers are swapped out, so no
checkpoint, early stopping or progress line sees a trial step. What this module adds around them:
- only `fit` is tuned (Lightning's BatchSizeFinder would also search again when the test split is scored);
- the optimizer and its schedule are built again afterwards: warmup/decay follow the found lr and the number
  of optimizer steps the found batch size gives (LambdaLR keeps the lr it was built with);
- the found values go into metrics.json (tune/batch_size, tune/lr), the loggers and the run's config.yaml
  (data.batch_size, optimizer.lr, with tune.* back to null), so resume= and lft.evaluate reuse them;
- the LR finder's loss-vs-lr curve is saved as <run dir>/lr_find.png.
"""

import copy
import logging
import math
from pathlib import Path

from lightning.pytorch.callbacks import BatchSizeFinder, Callback, LearningRateFinder
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.seed import isolate_rng
from omegaconf import open_dict

from lft.config.errors import ConfigError
from lft.runs import console
from lft.runs.folder import save_config
from lft.runs.layout import LR_PLOT

log = logging.getLogger("lft")
# LearningRateFinder.suggestion() skips the first 10 and the last loss and needs 2 more to take a gradient.
MIN_LR_STEPS = 13


def tune_callbacks(cfg) -> list[Callback]:
    """The finders cfg.tune asks for (none by default), then the callback that applies and records them."""
    tune = cfg.get("tune") or {}
    finders = []
    if tune.get("batch_size") == "auto":
        # The search starts at the configured batch size: a run never trains with a smaller one than asked for.
        finders.append(FitBatchSizeFinder(mode=tune.mode, steps_per_trial=tune.steps_per_trial,
                                          init_val=cfg.data.batch_size, max_val=tune.max_batch_size))
    if tune.get("lr") == "find":  # after the batch size: the best lr depends on it
        finders.append(FitLearningRateFinder(min_lr=tune.min_lr, max_lr=tune.max_lr,
                                             num_training_steps=tune.num_training_steps))
    return [*finders, TuneResults(cfg)] if finders else []


def tuned(trainer) -> dict:
    """tune/batch_size and tune/lr as found in this fit, for metrics.json; {} without finders."""
    return next((c.found for c in trainer.callbacks if isinstance(c, TuneResults)), {})


class FitBatchSizeFinder(BatchSizeFinder):
    """Searches once, when fit starts; the test split is scored with data.eval_batch_size as configured."""

    def scale_batch_size(self, trainer, pl_module) -> None:
        # Trial steps draw dropout masks: the real run draws what an untuned one would. The finder's temporary
        # checkpoint (restored after the trials) needs no weights_only note.
        with isolate_rng(), console.held_back(console.FINDER_CHECKPOINT):
            super().scale_batch_size(trainer, pl_module)
        # In power mode Lightning doubles past max_val before it stops; the cap is the cap.
        if self.optimal_batch_size is not None and self.optimal_batch_size > self._max_val:
            self.optimal_batch_size = self._max_val
            trainer.datamodule.batch_size = self._max_val
            trainer.fit_loop._combined_loader = None  # rebuild the loader with the capped size
            trainer.fit_loop.setup_data()

    def on_validation_start(self, trainer, pl_module) -> None:
        pass

    def on_test_start(self, trainer, pl_module) -> None:
        pass

    def on_predict_start(self, trainer, pl_module) -> None:
        pass


class FitLearningRateFinder(LearningRateFinder):
    def lr_find(self, trainer, pl_module) -> None:
        max_epochs = trainer.fit_loop.max_epochs
        trainer.fit_loop.max_epochs = -1  # the range test may span several epochs of a small train split
        try:
            with console.held_back(console.FINDER_CHECKPOINT):  # its temporary checkpoint, restored after the test
                super().lr_find(trainer, pl_module)
        finally:
            trainer.fit_loop.max_epochs = max_epochs
        if self.optimal_lr is not None and self.optimal_lr.suggestion() is None:
            losses = self.optimal_lr.results["loss"]
            finite = sum(map(math.isfinite, losses))
            raise ConfigError(f"tune.lr=find: the range test stopped after {len(losses)} steps ({finite} with a finite "
                              f"loss; the loss diverged), too few to suggest a learning rate (it needs "
                              f"{MIN_LR_STEPS}); lower tune.max_lr or tune.min_lr, or set optimizer.lr instead.")


class TuneResults(Callback):
    """Runs after the finders (Lightning puts tuner callbacks first): applies, records and saves what they found."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.found: dict = {}

    def on_fit_start(self, trainer, pl_module) -> None:
        for callback in trainer.callbacks:
            if isinstance(callback, FitBatchSizeFinder) and callback.optimal_batch_size is not None:
                self.found["tune/batch_size"] = int(trainer.datamodule.batch_size)
            if isinstance(callback, FitLearningRateFinder) and callback.optimal_lr is not None:
                self.found["tune/lr"] = float(pl_module.lr)
                self._plot(callback.optimal_lr)
        # A fresh optimizer and schedule: base lr = the found one, total steps from the found batch size.
        trainer.strategy.setup_optimizers(trainer)
        log.info("Tuned: %s", self.found)
        for logger in trainer.loggers:
            logger.log_metrics(self.found, step=0)
        self._save_config()

    @rank_zero_only
    def _plot(self, lr_finder) -> None:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display
        import matplotlib.pyplot as plt

        fig = lr_finder.plot(suggest=True)
        fig.savefig(Path(self.cfg.paths.output_dir) / LR_PLOT, dpi=100)
        plt.close(fig)

    @rank_zero_only
    def _save_config(self) -> None:
        """config.yaml as the run really trains: the found values in place, the finders off (so resume= works)."""
        cfg = copy.deepcopy(self.cfg)
        with open_dict(cfg):
            if "tune/batch_size" in self.found:
                cfg.data.batch_size = self.found["tune/batch_size"]
            if "tune/lr" in self.found:
                cfg.optimizer.lr = self.found["tune/lr"]
            cfg.tune.batch_size = cfg.tune.lr = None
        save_config(cfg, Path(cfg.paths.output_dir))
