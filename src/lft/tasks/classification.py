"""Sequence classification (sentiment, topics, NLI): encoder or decoder backbone + a classification head."""

import logging
from dataclasses import dataclass
from typing import ClassVar

import torch
from datasets import DatasetDict
from omegaconf import DictConfig
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding

from lft.config.errors import ConfigError
from lft.data.augment import augment_train
from lft.data.cache import cached_encoding
from lft.data.datamodule import datamodule_for
from lft.data.sources import load_splits, require_columns
from lft.data.values import classification_columns
from lft.models.loading import align_pad_token, load_pretrained
from lft.tasks.protocol import Encoded

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class ClassificationTask:
    """text (+ pair) -> one of data.label_names: a classification head on an encoder or decoder backbone;
    the label set is data.label_names, or else the train split's labels (Encoded.label_names)."""

    name: ClassVar[str] = "classification"
    peft_task_type: ClassVar[str] = "SEQ_CLS"
    cfg: DictConfig
    augment: DictConfig | None = None  # the run's `augment` settings: applied to the train split before tokenizing

    # --- data ---------------------------------------------------------------------------------
    def encode(self, tokenizer, seed: int, cache_dir: str | None = None) -> Encoded:
        cfg = self.cfg
        encoded, metadata = cached_encoding(lambda: self._tokenize(tokenizer, seed), task=type(self).__name__,
                                            data_cfg=cfg, tokenizer=tokenizer, seed=seed, cache_dir=cache_dir,
                                            augment=self.augment)
        collate = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8)
        datamodule = datamodule_for(cfg, encoded, collate, seed, stats=metadata.get("stats"))
        return Encoded(datamodule, label_names=tuple(metadata["label_names"]))  # from the data when cfg names none

    def label_names(self, encoded: Encoded | None) -> list[str]:
        """The encoding's label set; without one (a model built without data), data.label_names."""
        if encoded is not None:
            return list(encoded.label_names)
        return [str(n) for n in self.cfg.label_names] if self.cfg.get("label_names") else []

    def _tokenize(self, tokenizer, seed: int) -> tuple[DatasetDict, dict]:
        """Load and check the splits, augment train, then tokenize: (encoded splits, {"label_names", "stats"})."""
        cfg = self.cfg
        splits = load_splits(cfg, seed, classification_columns(cfg))
        require_columns(splits, {"text_column": cfg.text_column, "text_pair_column": cfg.get("text_pair_column"),
                                 "label_column": cfg.label_column})
        names = resolve_label_names(cfg, splits["train"])
        label_ids = label_index(cfg, names, splits)
        check_train_classes(cfg, names, splits["train"], label_ids)
        splits, stats = augment_train(splits, self.augment, [cfg.text_column, cfg.get("text_pair_column")], seed)

        def tokenize(batch):
            pair = batch[cfg.text_pair_column] if cfg.get("text_pair_column") else None
            encoded = tokenizer(batch[cfg.text_column], pair, truncation=True, max_length=cfg.max_length)
            encoded["labels"] = [label_ids[str(v)] for v in batch[cfg.label_column]]
            return encoded

        encoded = splits.map(tokenize, batched=True, remove_columns=splits["train"].column_names,
                             desc="Tokenizing")
        return encoded, {"label_names": names, "stats": stats}

    # --- model --------------------------------------------------------------------------------
    def build_model(self, model_cfg, encoded: Encoded | None = None) -> nn.Module:
        names = self.label_names(encoded)
        if len(names) < 2:
            raise ConfigError(f"data.label_names={names}: classification needs at least two labels.")
        model = load_pretrained(
            model_cfg,
            AutoModelForSequenceClassification,
            num_labels=len(names),
            id2label=dict(enumerate(names)),
            label2id={n: i for i, n in enumerate(names)},
        )
        align_pad_token(model)  # decoder backbones pool the last non-pad token
        if model_cfg.get("head"):
            replace_head(model, model_cfg.head, len(names))
        return model

    def head_modules(self, model) -> list[str]:
        """Top-level modules outside the pretrained backbone (classifier, pre_classifier, score, ...)."""
        backbone = model.base_model_prefix
        return [name for name, child in model.named_children()
                if name != backbone and any(True for _ in child.parameters())]

    # --- training and evaluation ----------------------------------------------------------------
    def metrics(self, encoded: Encoded) -> MetricCollection:
        n = len(encoded.label_names)
        return MetricCollection({
            "accuracy": MulticlassAccuracy(num_classes=n, average="micro"),
            "f1": MulticlassF1Score(num_classes=n, average="macro"),
        })

    def loss(self, model, batch) -> torch.Tensor:
        return model(**batch).loss

    def items(self, batch) -> int:
        return len(batch["labels"])  # the loss averages over rows

    def evaluate(self, model, batch, metrics: MetricCollection, encoded: Encoded) -> torch.Tensor:
        out = model(**batch)
        metrics.update(out.logits.argmax(-1), batch["labels"])
        return out.loss

    def take_samples(self, encoded: Encoded) -> list[dict]:
        return []  # a classifier generates no text


def resolve_label_names(cfg, train) -> list[str]:
    """data.label_names, or the labels of the train split in a stable (sorted) order."""
    if cfg.get("label_names"):
        return [str(n) for n in cfg.label_names]
    names = sorted({str(v) for v in train[cfg.label_column]})
    log.info("Inferred label names from train: %s", names)
    return names


def label_index(cfg, names: list[str], splits) -> dict[str, int]:
    """Map raw label values (names, or integer ids) to ids; reject values outside the label set."""
    ids = {str(i): i for i in range(len(names))}  # integer labels index label_names
    ids.update({name: i for i, name in enumerate(names)})  # names win where they look like ints
    for split, ds in splits.items():
        for row, value in enumerate(ds[cfg.label_column]):
            if str(value) not in ids:
                raise ConfigError(
                    f"data.label_column={cfg.label_column!r}: value {value!r} (row {row} of {split}) is not "
                    f"in data.label_names={names} nor an index into it; fix the data or data.label_names."
                )
    return ids


def check_train_classes(cfg, names: list[str], train, label_ids: dict[str, int]) -> None:
    """A classifier trained on one class learns to answer it always; a class train lacks is never predicted."""
    column = cfg.label_column
    seen = {label_ids[str(v)] for v in train[column]}
    if len(seen) == 1:
        raise ConfigError(
            f"data.label_column={column!r}: every train row has the label {names[seen.pop()]!r}, so there is "
            "nothing to tell apart; a classifier needs at least two classes in train. Check data.label_column, "
            "the train file, and data.train_size (a small subset can miss classes)."
        )
    missing = [names[i] for i in range(len(names)) if i not in seen]
    if missing:
        log.warning("The train split has no row labelled %s (of data.label_names=%s): the model cannot learn to "
                    "predict it. Check the train file, or data.train_size if it is a small subset.", missing, names)


class ClassificationHead(nn.Module):
    """dropout -> dense -> GELU -> dropout -> linear: the custom head of seed guide 'Add a custom head'."""

    def __init__(self, in_features: int, hidden_size: int, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(in_features, hidden_size), nn.GELU(),
            nn.Dropout(dropout), nn.Linear(hidden_size, num_labels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def replace_head(model, head_cfg, num_labels: int) -> None:
    """Swap the final linear classifier (`classifier` or `score`) for a ClassificationHead."""
    for name in ("classifier", "score"):
        old = getattr(model, name, None)
        if isinstance(old, nn.Linear):
            head = ClassificationHead(old.in_features, head_cfg.hidden_size, num_labels, head_cfg.get("dropout", 0.1))
            setattr(model, name, head.to(old.weight.dtype))
            return
    raise ConfigError(
        f"model.head: {type(model).__name__} has no linear `classifier` or `score` to replace; "
        "set model.head=null to keep its own head."
    )
