"""A LightningDataModule over already encoded splits: tasks do the encoding, this does the batching."""

import lightning as L
from datasets import DatasetDict
from torch.utils.data import DataLoader


class EncodedDataModule(L.LightningDataModule):
    def __init__(self, splits: DatasetDict, collate_fn, batch_size: int, eval_batch_size: int, num_workers: int = 0):
        super().__init__()
        self.splits = splits
        self.collate_fn = collate_fn
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers

    def _loader(self, split: str, shuffle: bool, batch_size: int) -> DataLoader:
        return DataLoader(
            self.splits[split],
            batch_size=batch_size,
            shuffle=shuffle,
            collate_fn=self.collate_fn,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True, self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", False, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False, self.eval_batch_size)
