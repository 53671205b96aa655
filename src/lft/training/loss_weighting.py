"""Token-weighted accumulation and data parallelism: a loss over tokens stays one however the batch is split.

A task's loss is a mean over one micro-batch's labelled items: tokens for language models, pairs for
preference tasks, rows for classifiers. Lightning divides each micro-batch's loss by accumulate_grad_batches
(k; also in an epoch's last, shorter window) and DDP averages gradients over the W processes, so left alone a
step averages micro-batch means: a micro-batch of 10 response tokens weighs as much as one of 500. Instead
each micro-batch trains on

    mean loss x items x k x W / N    (= the sum of its item losses x k x W / N)

where N counts the labelled items of its whole accumulation window on all processes. After Lightning's 1/k
and DDP's 1/W the step's gradient is that of (sum of every item loss in the window) / N: one batch of k x W
times the rows (transformers' Trainer does the same with `num_items_in_batch`). With one micro-batch per step
on one process N is the batch's own count, and the loss is the plain mean.

N must be known before the window's first backward. No prefetching: the batch sampler (data/sampler.py)
knows every global batch of the epoch from (seed, epoch) alone, and the datamodule counts each training row's
items once, from its encoded labels (`row_items`); packing, length grouping and mixtures change which rows a
batch holds, never what a row counts. So N is a look-ahead sum over the window's global batches: every
process computes the same N without communicating, and a mid-epoch resume gets the same N, since it is a
function of (seed, epoch, batch index). The first micro-batch of each fit checks that the batch's own count
(task.items) equals the sampler's, which costs one device sync.

Without lft's sampler (a plain DataLoader) the weighting steps aside: micro-batch means, as Lightning does.
DeepSpeed counts its accumulation windows itself, across epoch ends: its windows are these when an epoch's
batch count is a multiple of k.
"""

import logging
from functools import cache

import torch

from lft.data.sampler import ResumableBatchSampler

log = logging.getLogger(__name__)


def training_sampler(trainer) -> ResumableBatchSampler | None:
    """The batch sampler of the loader that is training now (the batch-size finder swaps loaders)."""
    sampler = getattr(trainer.train_dataloader, "batch_sampler", None)
    return sampler if isinstance(sampler, ResumableBatchSampler) else None


def micro_batch_weight(trainer, batch_idx: int, items) -> torch.Tensor | float:
    """items x k x W / N: the factor that turns a micro-batch's mean loss into its share of the step's."""
    sampler = training_sampler(trainer)
    k = trainer.accumulate_grad_batches
    if sampler is None:
        if k > 1 or trainer.world_size > 1:
            _warn_unweighted()
        return 1.0
    start = batch_idx - batch_idx % k  # Lightning steps after batches k-1, 2k-1, ... and after the epoch's last
    stop = min(start + k, trainer.num_training_batches)  # limit_train_batches may end the epoch early
    window = sampler.window_items(trainer.current_epoch, start, stop)
    return items * (k * trainer.world_size / max(window, 1))


@cache
def _warn_unweighted() -> None:
    log.warning("The training loader has no lft batch sampler, so accumulated micro-batches and processes are "
                "averaged as Lightning does (each micro-batch's mean), not weighted by their labelled tokens.")


def check_items(trainer, batch_idx: int, items) -> None:
    """The batch's labelled items must be what the sampler counted for it, or N would weigh the wrong tokens."""
    sampler = training_sampler(trainer)
    if sampler is None:
        return
    expected = sampler.local_items(trainer.current_epoch, batch_idx)
    if int(items) != expected:
        raise RuntimeError(
            f"Training batch {batch_idx} holds {int(items)} labelled items but the sampler counted {expected} for "
            "it: the task's items() and its datamodule's row_items disagree, so the loss cannot be weighted by "
            "tokens. This is a bug in lft; please report it with the data and task config."
        )
