"""Text-to-text data (source -> target) shared by the seq2seq and prompt-mode causal LM tasks.

Loads the splits, checks every column the template and targets need (before any model loads), and gives each
row its references: `data.reference_columns` (DialogSum's test has summary1..3) where a split has them, else
the target column alone. A split without the target column trains/validates on its first reference.
`encode_text_pairs` is the encoding loop both tasks share; each gives only how a row's ids are laid out.
"""

import logging

from datasets import Dataset, DatasetDict

from lft.config.errors import ConfigError
from lft.config.schema import default
from lft.data.augment import augment_train
from lft.data.sources import load_splits
from lft.data.templates import Template, get_template
from lft.data.values import MISSING, kind, text_to_text_columns

log = logging.getLogger(__name__)


def load_pairs(cfg, seed: int) -> tuple[DatasetDict, Template]:
    template = get_template(cfg.get("template"), cfg.get("source_column"))
    splits = load_splits(cfg, seed, text_to_text_columns(cfg, template))
    for split, ds in splits.items():
        for column in template.columns():
            if column not in ds.column_names:
                key = "data.template" if cfg.get("template") else "data.source_column"
                raise ConfigError(
                    f"{key} references column {column!r}, which the {split} split lacks "
                    f"(columns: {', '.join(ds.column_names)}); fix {key} or the data."
                )
        if cfg.target_column not in ds.column_names and not reference_columns(cfg, ds):
            raise ConfigError(
                f"data.target_column={cfg.target_column!r} is not a column of the {split} split "
                f"(columns: {', '.join(ds.column_names)}); set data.target_column (or data.reference_columns)."
            )
    if cfg.target_column not in splits["train"].column_names:
        raise ConfigError(f"data.target_column={cfg.target_column!r} must be a column of the train split.")
    return splits, template


def load_augmented_pairs(cfg, seed: int, augment) -> tuple[DatasetDict, dict]:
    """load_pairs, then the train split's template columns (not targets nor references) augmented:
    (splits, augmentation stats)."""
    splits, template = load_pairs(cfg, seed)
    return augment_train(splits, augment, source_columns(cfg, template, splits["train"]), seed)


def source_columns(cfg, template, train) -> list[str]:
    """The columns the template reads, less the target and reference columns: what augmentation may change."""
    targets = {cfg.target_column, *reference_columns(cfg, train)}
    return [c for c in template.columns() if c not in targets]


def generation_limit(cfg, key: str) -> int | None:
    """Rows of a split to generate for: an int, 0 (none) or null (all)."""
    gen = cfg.get("generate") or {}
    if not gen.get("val_samples"):
        return 0
    return gen.get(key)


def encode_text_pairs(cfg, splits: DatasetDict, encode_rows) -> DatasetDict:
    """Every split encoded a batch of rows at a time, then data.long_targets applied to train.

    encode_rows(rows, targets) returns one feature dict per row (input_ids, attention_mask, labels, ... and the
    `too_long` flag of its target); validation and test rows also get what evaluation reads (eval_fields).
    """
    limits = {"validation": generation_limit(cfg, "val_samples"), "test": generation_limit(cfg, "test_samples")}

    def encode_split(split, ds):
        refs = reference_columns(cfg, ds)

        def encode(rows, indices):
            out = encode_rows(rows, [row_target(cfg, refs, row) for row in rows])
            if split != "train":
                for features, row, idx in zip(out, rows, indices, strict=True):
                    features.update(eval_fields(cfg, refs, row, idx, limits[split]))
            return out

        return map_rows(ds, encode, desc=f"Tokenizing {split}")

    return limit_long_targets(cfg, DatasetDict({s: encode_split(s, ds) for s, ds in splits.items()}))


def reference_columns(cfg, ds) -> list[str]:
    return [c for c in (cfg.get("reference_columns") or []) if c in ds.column_names]


def named_references(cfg, columns: list[str], row: dict) -> list[tuple[str, str]]:
    """(column, text) of a row's references: the reference columns it has a value in (data/values.py), else its
    target."""
    refs = [(c, str(row[c])) for c in columns if kind(row.get(c)) not in MISSING]
    return refs or [(cfg.target_column, target_text(cfg, row[cfg.target_column]))]


def row_target(cfg, columns: list[str], row: dict) -> str:
    return target_text(cfg, row[cfg.target_column]) if cfg.target_column in row else named_references(cfg, columns, row)[0][1]


def target_text(cfg, value) -> str:
    """A target as text: integer class labels become their `data.target_names` word (classification as
    instructions), anything else its string."""
    names = cfg.get("target_names")
    if names and isinstance(value, float) and value.is_integer():
        value = int(value)  # a CSV integer column with an empty cell loads as floats (data/values.py)
    if names and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not (isinstance(value, int) and 0 <= value < len(names)):
            raise ConfigError(f"data.target_names={list(names)} has no name for label {value}; list one name per "
                              "label, in label order.")
        return str(names[value])
    return str(value)


def eval_fields(cfg, columns: list[str], row: dict, index: int, limit: int | None) -> dict:
    """What evaluation reads from a validation/test row: its index, references (and the columns they came from, so
    saved generations can be scored again against some of them: lft.recipes.rescore), whether to generate for it."""
    names, refs = zip(*named_references(cfg, columns, row), strict=True)
    return {"row": index, "references": list(refs), "reference_columns": list(names),
            "generate": limit is None or index < limit}


def map_rows(ds: Dataset, encode_rows, desc: str) -> Dataset:
    """ds.map over batches of rows: encode_rows(rows, indices) returns one dict per row.

    Batches let the tokenizer encode many texts per call, which Rust tokenizers spread over every core. No
    num_proc: on 2 cores it made the 5,000-row Alpaca encode slower (forked workers lose those threads), and
    the tokenization cache makes encoding a one-time cost anyway.
    """
    def columns(batch: dict, indices: list[int]) -> dict:
        rows = [dict(zip(batch, values, strict=True)) for values in zip(*batch.values(), strict=True)]
        encoded = encode_rows(rows, indices)
        return {key: [row[key] for row in encoded] for key in encoded[0]} if encoded else {}

    return ds.map(columns, batched=True, with_indices=True, remove_columns=ds.column_names, desc=desc)


def limit_long_targets(cfg, encoded: DatasetDict) -> DatasetDict:
    """Apply data.long_targets to train rows whose target did not fit data.max_target_length (`too_long` flag).

    Validation/test targets are only truncated: their metrics use the full reference text.
    """
    # error, truncate or drop: lft.config.validate refused any other value
    policy = cfg.get("long_targets", default("data.long_targets"))
    n_long = sum(encoded["train"]["too_long"])
    if n_long and policy == "error":
        raise ConfigError(
            f"data.max_target_length={cfg.max_target_length}: {n_long} of {len(encoded['train'])} train targets are "
            "longer; raise data.max_target_length or set data.long_targets=truncate or drop."
        )
    if n_long and policy == "drop":
        encoded["train"] = encoded["train"].filter(lambda r: not r["too_long"])
        log.info("Dropped %d train rows whose target is over data.max_target_length=%d tokens.", n_long,
                 cfg.max_target_length)
    elif n_long:
        log.info("Truncated %d train targets to data.max_target_length=%d tokens.", n_long, cfg.max_target_length)
    if len(encoded["train"]) == 0:
        raise ConfigError("data: no train row is left after data.long_targets=drop; raise data.max_target_length.")
    return DatasetDict({s: ds.remove_columns("too_long") for s, ds in encoded.items()})
