"""The training batch order: a pure function of (seed, epoch), sharded across processes, resumable mid-epoch.

One sampler serves every concern of the training loader:
- reproducible order: each epoch's order comes from `seed + epoch` alone, never from a global RNG;
- exact resume: `resume_at(epoch, batches)` skips the batches a checkpoint already trained on, once;
- data parallel: every process cuts its slice of the same global batches (rank r takes rows r*B..(r+1)*B),
  so N processes with batch B see exactly the rows one process with batch N*B would;
- length grouping: rows are sorted by length inside shuffled windows of many batches, so a batch pads to
  similar lengths (less wasted compute), while the batch order stays shuffled;
- other orders (e.g. task mixtures): pass `order`, a function (generator, epoch) -> row indices;
- look-ahead for token weighting: since every process knows every global batch, `window_items` counts the
  labelled items (tokens, rows or pairs: `row_items`) of any run of global batches, all processes' rows
  together, before the first of them trains (lft/training/loss_weighting.py).
"""

from collections.abc import Callable, Sequence
from itertools import accumulate

import torch

# Rows per length-sorting window, in global batches: wide enough to find similar lengths, narrow enough to mix.
GROUP_WINDOW_BATCHES = 64


def random_order(n: int) -> Callable[[torch.Generator, int], list[int]]:
    return lambda generator, epoch: torch.randperm(n, generator=generator).tolist()


class ResumableBatchSampler:
    def __init__(self, num_rows: int, batch_size: int, seed: int, *, shuffle: bool = True,
                 lengths: Sequence[int] | None = None, num_replicas: int = 1, rank: int = 0,
                 order: Callable[[torch.Generator, int], list[int]] | None = None,
                 current_epoch: Callable[[], int] | None = None, row_items: Sequence[int] | None = None):
        self.num_rows = num_rows
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.lengths = lengths  # None: no length grouping
        self.num_replicas = num_replicas
        self.rank = rank
        self.order = order or random_order(num_rows)
        self.epoch = 0
        # The trainer's epoch, read when an epoch's iteration starts: Lightning's set_epoch lags one epoch behind
        # after a resume at an epoch's end, which would replay the previous epoch's order.
        self.current_epoch = current_epoch
        self._skip: tuple[int, int] | None = None  # (epoch, batches) to skip once, set by resume_at
        self.row_items = row_items  # labelled items per row (tokens the loss averages over); None: 1 per row
        self._items_before: tuple[int, list[int]] | None = None  # (epoch, items in global batches before each)

    def set_epoch(self, epoch: int) -> None:  # Lightning calls this before every epoch
        self.epoch = epoch

    def resume_at(self, epoch: int, batches_done: int) -> None:
        """The next pass over `epoch` starts after its first `batches_done` batches (already trained on)."""
        self._skip = (epoch, batches_done)

    def global_batches(self, epoch: int) -> list[list[int]]:
        """The epoch's batches of num_replicas * batch_size rows, the same on every process."""
        generator = torch.Generator().manual_seed(self.seed + epoch)
        rows = self.order(generator, epoch) if self.shuffle else list(range(self.num_rows))
        size = self.batch_size * self.num_replicas
        if self.lengths is not None:
            rows = self._grouped(rows, size, generator)
        batches = [rows[i:i + size] for i in range(0, len(rows), size)]
        if batches and self.num_replicas > 1:  # every process needs a share of the last batch: wrap around
            last = batches[-1]
            short = -len(last) % self.num_replicas
            batches[-1] = last + rows[:short]
        return batches

    def _grouped(self, rows: list[int], size: int, generator: torch.Generator) -> list[int]:
        """Sort rows by length inside windows, cut batches, shuffle the full batches; the one partial batch
        (the last window's remainder) stays last, where every epoch's short batch is."""
        window = size * GROUP_WINDOW_BATCHES
        batches = []
        for start in range(0, len(rows), window):
            chunk = sorted(rows[start:start + window], key=lambda i: self.lengths[i], reverse=True)
            batches += [chunk[i:i + size] for i in range(0, len(chunk), size)]
        partial = batches.pop() if batches and len(batches[-1]) < size else []
        order = torch.randperm(len(batches), generator=generator).tolist()
        return [i for b in order for i in batches[b]] + partial

    def __iter__(self):
        epoch = self.current_epoch() if self.current_epoch else self.epoch
        skip = 0
        if self._skip is not None and self._skip[0] == epoch:
            skip = self._skip[1]
            self._skip = None
        for batch in self.global_batches(epoch)[skip:]:
            yield self._share(batch)

    def _share(self, batch: list[int]) -> list[int]:
        share = len(batch) // self.num_replicas
        return batch[share * self.rank:share * (self.rank + 1)]

    def window_items(self, epoch: int, start: int, stop: int) -> int:
        """Labelled items in the epoch's global batches start..stop-1 (every process's rows together)."""
        if self._items_before is None or self._items_before[0] != epoch:  # once per epoch, not per step
            sizes = [self._items(batch) for batch in self.global_batches(epoch)]
            self._items_before = (epoch, list(accumulate(sizes, initial=0)))
        before = self._items_before[1]
        return before[min(stop, len(before) - 1)] - before[start]

    def local_items(self, epoch: int, index: int) -> int:
        """Labelled items in this process's share of the epoch's global batch `index`."""
        return self._items(self._share(self.global_batches(epoch)[index]))

    def _items(self, rows: list[int]) -> int:
        return len(rows) if self.row_items is None else sum(int(self.row_items[i]) for i in rows)

    def __len__(self) -> int:
        size = self.batch_size * self.num_replicas
        return -(-self.num_rows // size)
