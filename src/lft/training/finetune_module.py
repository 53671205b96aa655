"""The one LightningModule: a Hugging Face model, a task (loss and metrics) with its encoded data, an optimizer
and a schedule."""

import time
from functools import partial

import lightning as L
import torch
from torch.optim.lr_scheduler import LambdaLR

from lft.training.loggers import log_samples
from lft.training.loss_weighting import check_items, micro_batch_weight
from lft.training.schedulers import lr_lambda

NO_DECAY = ("bias", "norm", "ln_")  # parameter-name fragments that skip weight decay


class FineTuneModule(L.LightningModule):
    def __init__(self, model: torch.nn.Module, task, optimizer: partial, scheduler_cfg, encoded):
        super().__init__()
        self.model = model
        self.task = task
        self.encoded = encoded  # what task.encode() returned: the task's metrics and evaluation read it
        self.optimizer_factory = optimizer
        # The base learning rate, an attribute so Lightning's LearningRateFinder (tune.lr=find) can set it.
        self.lr = optimizer.keywords.get("lr") if optimizer else None
        self.scheduler_cfg = scheduler_cfg
        self.val_metrics = task.metrics(encoded).clone(prefix="val/")
        self.test_metrics = task.metrics(encoded).clone(prefix="test/")
        for name in getattr(task, "training_metrics", ()):  # statistics of updates (online RL): none in a test
            self.test_metrics.pop(name)
        # Checkpoints keep only trainable weights (see on_save_checkpoint), so loading is partial.
        self.strict_loading = False
        # Generated rows of the last evaluation per stage (generative tasks), for lft.evaluate.
        self.samples: dict[str, list[dict]] = {}
        self.train_loop_seconds = 0.0  # the training loop alone (fit minus setup and teardown), for metrics.json
        self._loop_start = 0.0
        self._items_checked = False
        # Online RL (tasks/rl.py) makes several optimizer steps per batch: its train_step drives the optimizer.
        self.automatic_optimization = not getattr(task, "online", False)

    def on_fit_start(self):
        self.train_loop_seconds = 0.0  # tuner trials (lft/callbacks/finders.py) run the training loop before fit starts
        self._items_checked = False

    def on_train_start(self):
        self._loop_start = time.perf_counter()

    def on_train_end(self):
        self.train_loop_seconds += time.perf_counter() - self._loop_start

    def training_step(self, batch, batch_idx):
        if not self.automatic_optimization:
            return self.task.train_step(self, batch)
        loss = self.task.loss(self.model, batch)  # the mean over the batch's labelled items: what train/loss shows
        self.log("train/loss", loss, prog_bar=True, batch_size=_batch_size(batch))
        items = self.task.items(batch)
        if not self._items_checked:
            check_items(self.trainer, batch_idx, items)
            self._items_checked = True
        # Weighted by items across accumulated micro-batches and processes (lft/training/loss_weighting.py).
        return loss * micro_batch_weight(self.trainer, batch_idx, items)

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, self.val_metrics, "val")

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, self.test_metrics, "test")

    def _evaluate(self, batch, metrics, stage: str):
        loss = self.task.evaluate(self.model, batch, metrics, self.encoded)
        n = _batch_size(batch)
        self.log(f"{stage}/loss", loss, prog_bar=True, sync_dist=True, batch_size=n)
        self.log_dict(metrics, prog_bar=True, batch_size=n)

    def on_validation_epoch_end(self):
        self._log_samples("val")

    def on_test_epoch_end(self):
        self._log_samples("test")

    def _log_samples(self, stage: str):
        rows = self.task.take_samples(self.encoded)  # only generative tasks generate text
        if rows:
            self.samples[stage] = rows
            if self.trainer.is_global_zero:
                log_samples(self.loggers, rows, stage, self.global_step)

    def configure_optimizers(self):
        decay, no_decay = [], []
        for name, param in self.model.named_parameters():
            if param.requires_grad:
                (no_decay if any(k in name.lower() for k in NO_DECAY) else decay).append(param)
        weight_decay = self.optimizer_factory.keywords.get("weight_decay", 0.0)
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        optimizer = self.optimizer_factory(groups, **({} if self.lr is None else {"lr": self.lr}))
        scheduler = LambdaLR(optimizer, lr_lambda(self.scheduler_cfg, self.total_steps()))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def total_steps(self) -> int:
        """Optimizer steps the fit will make (the schedule's length; progress lines show it)."""
        total = int(self.trainer.estimated_stepping_batches)
        if not self.automatic_optimization and self.trainer.max_steps == -1:  # batches, each several updates
            total *= self.task.updates_per_batch(self.encoded.datamodule.batch_size)
        return total

    def on_save_checkpoint(self, checkpoint):
        # Frozen weights are the pretrained ones: keep LoRA/freeze checkpoints small.
        trainable = {f"model.{n}" for n, p in self.model.named_parameters() if p.requires_grad}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}


def _batch_size(batch) -> int:
    return len(next(iter(batch.values())))
