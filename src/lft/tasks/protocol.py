"""What every task offers, as a type: train, evaluate, forgetting checks and ensembles call only this.

A task is built once with everything it needs (its data config, the run's `augment`, for DPO the reference) and
never changes after. What encoding learns (the label set read from the data, the generator, the prompt format)
comes back in an `Encoded` value, which the run hands to the methods that need it.
"""

from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn
from torchmetrics import MetricCollection

from lft.data.datamodule import EncodedDataModule
from lft.data.templates import PromptBuilder
from lft.generation.generator import Generator


@dataclass(frozen=True)
class Encoded:
    """A task's encoded data and what encoding learned about it."""

    datamodule: EncodedDataModule
    label_names: tuple[str, ...] = ()  # classification: data.label_names, or the train split's labels
    generator: Generator | None = None  # generative tasks: generates and scores evaluation rows
    prompts: PromptBuilder | None = None  # prompt-mode causal LM: how prompts were formatted
    members: dict[str, "Encoded"] = field(default_factory=dict)  # a mixture: each member's own


class Task(Protocol):
    name: str  # the family: classification, seq2seq, causal_lm, dpo, reward
    peft_task_type: str  # peft's TaskType for adapters on this family's model

    def encode(self, tokenizer, seed: int, cache_dir: str | None = None) -> Encoded:
        """Load, check and tokenize the data before any model loads (cache_dir: read or write the token cache).
        Leaves the tokenizer as it was."""

    def build_model(self, model_cfg, encoded: Encoded | None = None) -> nn.Module:
        """The pretrained model with this family's head (a classifier reads its labels from `encoded`)."""

    def head_modules(self, model) -> list[str]:
        """Modules outside the pretrained backbone, which a PEFT or freeze strategy keeps trainable."""

    def metrics(self, encoded: Encoded) -> MetricCollection:
        """Fresh validation/test metrics."""

    def loss(self, model, batch) -> torch.Tensor:
        """Training loss: a mean over the batch's labelled items."""

    def items(self, batch) -> int | torch.Tensor:
        """Those items (tokens, rows or pairs); the datamodule's `row_items` counts them per row."""

    def evaluate(self, model, batch, metrics: MetricCollection, encoded: Encoded) -> torch.Tensor:
        """Validation/test loss of a batch; updates metrics."""

    def take_samples(self, encoded: Encoded) -> list[dict]:
        """Rows generated since the last call (none for tasks that do not generate)."""
