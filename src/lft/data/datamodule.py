"""A LightningDataModule over already encoded splits: tasks do the encoding, this does the batching.

Training batches come from ResumableBatchSampler (data/sampler.py): the order depends on the seed and the
epoch only, each process takes its slice, and a checkpoint records how far into the epoch training got
(state_dict), so a resumed run sees exactly the batches an uninterrupted one would. The sampler also knows
each row's labelled items (`row_items`: what the task's loss averages over), so the training step can weight
its loss by tokens across accumulation and processes (lft/training/loss_weighting.py). Evaluation batches follow
the task's `eval_order` (generative tasks: rows to generate for first, by prompt length), else dataset order.
"""

from collections.abc import Callable, Sequence

import lightning as L
import numpy as np
import pyarrow.compute as pc
import torch
from datasets import DatasetDict
from torch.utils.data import DataLoader, DistributedSampler

from lft.data.labels import IGNORE
from lft.data.sampler import ResumableBatchSampler


def row_lengths(split) -> list[int]:
    """Tokens per row: input_ids, or for preference pairs the longer answer's sequence."""
    if "input_ids" in split.column_names:
        return [len(ids) for ids in split["input_ids"]]
    columns = [c for c in split.column_names if c.endswith("input_ids")]
    return [max(len(ids) for ids in row) for row in zip(*(split[c] for c in columns), strict=True)]


def labelled_tokens(split, shifted: bool) -> np.ndarray:
    """Labels other than -100 per row: the tokens a loss averages over. shifted: a causal LM, whose first
    position predicts nothing (its loss reads labels[1:]); packing drops exactly that label per document too."""
    labels = split.with_format("arrow")["labels"].combine_chunks()  # columnar: no Python loop over tokens
    lengths = pc.list_value_length(labels).fill_null(0).to_numpy()
    kept = labels.flatten().to_numpy(zero_copy_only=False) != IGNORE
    ends = np.cumsum(lengths)
    starts = ends - lengths
    counts = np.concatenate([[0], np.cumsum(kept)])
    counts = counts[ends] - counts[starts]
    if shifted:
        filled = lengths > 0
        counts[filled] -= kept[starts[filled]]
    return counts


def member_batches(members: list[int], batch_size: int) -> list[list[int]]:
    """Consecutive rows cut into batches of at most batch_size that never cross a change of member."""
    batches, start = [], 0
    for end in range(1, len(members) + 1):
        if end == len(members) or members[end] != members[start] or end - start == batch_size:
            batches.append(list(range(start, end)))
            start = end
    return batches


class ResumableDataLoader(DataLoader):
    """The training loader. It resumes mid-epoch exactly, through the datamodule's checkpoint state (where the
    epoch stood) and the sampler it gives; Lightning asks the loader itself whether it can resume, and without
    these two methods warns on every mid-epoch resume that the results may be unreliable."""

    def state_dict(self) -> dict:
        return {}  # nothing beyond the datamodule's state

    def load_state_dict(self, state: dict) -> None:
        pass


class EncodedDataModule(L.LightningDataModule):
    def __init__(self, splits: DatasetDict, collate_fn, batch_size: int, eval_batch_size: int, num_workers: int = 0,
                 *, seed: int = 0, group_by_length: bool = False, train_collate_fn=None, stats: dict | None = None,
                 eval_order: Callable[[object], list[int]] | None = None,
                 train_order: Callable[[torch.Generator, int], list[int]] | None = None,
                 epoch_rows: int | None = None, row_items: Callable[[object], Sequence[int]] | None = None):
        super().__init__()
        self.splits = splits
        self.stats = dict(stats or {})  # what encoding counted for the run's metrics (e.g. augment/changed)
        self.collate_fn = collate_fn
        self.train_collate_fn = train_collate_fn or collate_fn  # e.g. packing, which evaluation does not use
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.group_by_length = group_by_length
        self.eval_order = eval_order
        self.train_order = train_order  # None: every training row once per epoch, shuffled (mixtures: data/mixture.py)
        self.epoch_rows = epoch_rows  # rows train_order yields per epoch (default: the split's size)
        # Labelled items per training row, from the split (None: the loss averages over rows or pairs).
        self.row_items = row_items
        self._train_items: Sequence[int] | None = None
        self._ordered: dict[str, object] = {}  # evaluation splits in eval_order, computed once
        self.train_sampler: ResumableBatchSampler | None = None
        self._resume_at: tuple[int, int] | None = None

    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def train_dataloader(self) -> DataLoader:
        self.train_sampler = self.make_train_sampler(*self._world())
        if self._resume_at is not None:
            self.train_sampler.resume_at(*self._resume_at)
            self._resume_at = None
        return ResumableDataLoader(self.splits["train"], batch_sampler=self.train_sampler,
                                   collate_fn=self.train_collate_fn, num_workers=self.num_workers,
                                   persistent_workers=self.num_workers > 0, generator=self._own_generator())

    def make_train_sampler(self, world_size: int = 1, rank: int = 0) -> ResumableBatchSampler:
        """Process `rank`'s training batches among `world_size`, knowing each row's labelled items."""
        train = self.splits["train"]
        if self.row_items is not None and self._train_items is None:  # once: the batch-size finder rebuilds loaders
            self._train_items = self.row_items(train)
        lengths = row_lengths(train) if self.group_by_length else None
        epoch = self._trainer_epoch if self.trainer is not None else None  # None: the epoch set_epoch gives
        return ResumableBatchSampler(self.epoch_rows or len(train), self.batch_size, self.seed, lengths=lengths,
                                     num_replicas=world_size, rank=rank, order=self.train_order,
                                     current_epoch=epoch, row_items=self._train_items)

    def _trainer_epoch(self) -> int:
        return self.trainer.current_epoch

    def eval_split(self, split: str):
        """The split in `eval_order` (a view: Dataset.select keeps the rows and maps indices)."""
        if self.eval_order is None:
            return self.splits[split]
        if split not in self._ordered:
            self._ordered[split] = self.splits[split].select(self.eval_order(self.splits[split]))
        return self._ordered[split]

    def _eval_loader(self, split: str) -> DataLoader:
        world_size, rank = self._world()
        data = self.eval_split(split)
        common = {"collate_fn": self.collate_fn, "num_workers": self.num_workers,
                  "persistent_workers": self.num_workers > 0, "generator": self._own_generator()}
        if "member" in data.column_names:  # a mixture: a batch never mixes members (their fields differ)
            return DataLoader(data, batch_sampler=member_batches(data["member"], self.eval_batch_size)[rank::world_size],
                              **common)
        sampler = DistributedSampler(data, world_size, rank, shuffle=False) if world_size > 1 else None
        return DataLoader(data, batch_size=self.eval_batch_size, sampler=sampler, **common)

    def _own_generator(self) -> torch.Generator:
        # Every iter(DataLoader) draws a worker seed; from the global RNG that draw would shift dropout after
        # a resume (which starts a fresh iterator mid-epoch). Its own generator keeps the global one untouched.
        return torch.Generator().manual_seed(self.seed)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("validation")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    # --- exact resume: where in the epoch the checkpoint was taken ------------------------------
    def state_dict(self) -> dict:
        trainer = self.trainer
        if trainer is None or trainer.state.fn != "fit":
            return {}
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        # `processed`: batches whose optimizer step is in the saved weights (also when saving mid-batch-end).
        return {"epoch": trainer.current_epoch, "batches_done": progress.processed}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self._resume_at = (state["epoch"], state["batches_done"])


def datamodule_for(cfg, splits: DatasetDict, collate_fn, seed: int, **options) -> EncodedDataModule:
    """The EncodedDataModule of a data config: its batch sizes, workers and length grouping; `options` are the
    task's own (train_collate_fn, stats, eval_order, train_order, epoch_rows, row_items)."""
    return EncodedDataModule(splits, collate_fn, cfg.batch_size, cfg.eval_batch_size, cfg.get("num_workers", 0),
                             seed=seed, group_by_length=cfg.get("group_by_length", True), **options)
