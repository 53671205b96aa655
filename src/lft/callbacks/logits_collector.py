"""A classifier's test logits and labels, kept for ensembles (`lft.evaluate runs=[...]`, lft.evaluation.ensemble).

The task's evaluate() returns only the loss; the logits it scored are the model's output on each test batch.
A forward hook sees that output, so the ensemble averages exactly what each member's metrics saw (same
precision, same rows), with no second forward pass. The hook lives only while testing.
"""

import torch
from lightning.pytorch.callbacks import Callback


class TestLogits(Callback):
    def __init__(self):
        self.logits: list[torch.Tensor] = []  # per test batch: rows x classes, float32 on the CPU
        self.labels: list[torch.Tensor] = []  # per test batch: rows
        self._last: torch.Tensor | None = None
        self._hook = None

    def on_test_start(self, trainer, pl_module) -> None:
        self._hook = pl_module.model.register_forward_hook(self._keep)

    def _keep(self, module, args, output) -> None:
        self._last = output.logits.detach().float().cpu()

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.logits.append(self._last)
        self.labels.append(batch["labels"].cpu())

    def on_test_end(self, trainer, pl_module) -> None:
        self._hook.remove()

    def all(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits rows x classes, labels) of every test row, in test order."""
        return torch.cat(self.logits), torch.cat(self.labels)
