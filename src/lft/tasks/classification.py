"""Sequence classification (sentiment, topics, NLI): encoder or decoder backbone + a classification head."""

import logging

import torch
from datasets import DatasetDict
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding

from lft.config.errors import ConfigError
from lft.data.augment import augment_train
from lft.data.cache import cached_encoding
from lft.data.datamodule import EncodedDataModule
from lft.data.sources import load_splits, require_columns
from lft.data.values import classification_columns
from lft.models.loading import load_pretrained

log = logging.getLogger(__name__)


class ClassificationTask:
    name = "classification"
    peft_task_type = "SEQ_CLS"
    augment = None  # the run's `augment` settings (build_task): applied to the train split before tokenizing
    # A list set by lft.evaluate's ensembles: evaluate() appends (logits, labels) per batch, on the CPU (rows x classes).
    collected: list | None = None

    def __init__(self, data_cfg):
        self.cfg = data_cfg
        self.label_names: list[str] = [str(n) for n in data_cfg.label_names] if data_cfg.get("label_names") else []

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    # --- data ---------------------------------------------------------------------------------
    def encode(self, tokenizer, seed: int, cache_dir: str | None = None) -> EncodedDataModule:
        cfg = self.cfg
        encoded, metadata = cached_encoding(lambda: self._tokenize(tokenizer, seed), task=type(self).__name__,
                                            data_cfg=cfg, tokenizer=tokenizer, seed=seed, cache_dir=cache_dir,
                                            augment=self.augment)
        self.label_names = metadata["label_names"]  # from the data when the config names none
        collate = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8)
        return EncodedDataModule(encoded, collate, cfg.batch_size, cfg.eval_batch_size, cfg.get("num_workers", 0),
                                 seed=seed, group_by_length=cfg.get("group_by_length", True),
                                 stats=metadata.get("stats"))

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
    def build_model(self, model_cfg) -> nn.Module:
        if self.num_labels < 2:
            raise ConfigError(f"data.label_names={self.label_names}: classification needs at least two labels.")
        model = load_pretrained(
            model_cfg,
            AutoModelForSequenceClassification,
            num_labels=self.num_labels,
            id2label=dict(enumerate(self.label_names)),
            label2id={n: i for i, n in enumerate(self.label_names)},
        )
        if model.config.pad_token_id is None:  # decoder backbones pool the last non-pad token
            model.config.pad_token_id = model.config.eos_token_id
        if model_cfg.get("head"):
            replace_head(model, model_cfg.head, self.num_labels)
        return model

    def head_modules(self, model) -> list[str]:
        """Top-level modules outside the pretrained backbone (classifier, pre_classifier, score, ...)."""
        backbone = model.base_model_prefix
        return [name for name, child in model.named_children()
                if name != backbone and any(True for _ in child.parameters())]

    # --- training and evaluation ----------------------------------------------------------------
    def metrics(self) -> MetricCollection:
        n = self.num_labels
        return MetricCollection({
            "accuracy": MulticlassAccuracy(num_classes=n, average="micro"),
            "f1": MulticlassF1Score(num_classes=n, average="macro"),
        })

    def loss(self, model, batch) -> torch.Tensor:
        return model(**batch).loss

    def items(self, batch) -> int:
        return len(batch["labels"])  # the loss averages over rows

    def evaluate(self, model, batch, metrics: MetricCollection) -> torch.Tensor:
        out = model(**batch)
        metrics.update(out.logits.argmax(-1), batch["labels"])
        if self.collected is not None:
            self.collected.append((out.logits.detach().float().cpu(), batch["labels"].cpu()))
        return out.loss


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
