"""KTO's unpaired rows (prompt, completion, desirable or not): read as written, or derived from preference pairs.

A split with `data.completion_column` and `data.label_column` holds unpaired rows; the label says whether the
completion is desirable (true/false, 1/0, "true"/"false"). Any other split is read as pairs (data/preference.py),
each pair giving two rows, as TRL does: the chosen answer desirable, the rejected one undesirable. Rows are
truncated like pairs (oldest turns first, then the completion's end); an empty prompt or completion, or a last user
turn over data.max_prompt_length, makes a row unusable: dropped and counted, up to data.max_bad_fraction.
"""

from dataclasses import dataclass

from datasets import Dataset, DatasetDict

from lft.config.errors import ConfigError
from lft.data.preference_pairs import PairEncoder, encode_pairs, pair_triplets
from lft.data.sources import load_splits, require_columns
from lft.data.values import LABEL, TEXT, Column, preference_columns

DESIRABLE = {"true": True, "false": False, "1": True, "0": False}


@dataclass
class EncodedRow:
    prompt: list[int]
    completion: list[int]
    desirable: bool
    truncated: bool


def unpaired_columns(cfg) -> list[Column]:
    """Empty completions stay: the encoder drops and counts them; a row without a label is dropped as read."""
    return [Column("completion_column", cfg.completion_column, TEXT, required=False),
            Column("label_column", cfg.label_column, LABEL)]


def load_unpaired_splits(cfg, seed: int) -> DatasetDict:
    """Splits with `prompt`, `completion` (strings) and `desirable` (bool) columns."""
    splits = load_splits(cfg, seed, [*unpaired_columns(cfg), *preference_columns(cfg)])
    out = {}
    for split, ds in splits.items():
        if cfg.completion_column in ds.column_names and cfg.label_column in ds.column_names:
            out[split] = _labelled_rows(cfg, split, ds)
        else:
            out[split] = _rows_of_pairs(pair_triplets(cfg, DatasetDict({split: ds}))[split])
    return DatasetDict(out)


def _labelled_rows(cfg, split: str, ds: Dataset) -> Dataset:
    require_columns(DatasetDict({split: ds}), {"prompt_column": cfg.get("prompt_column")})
    labels = [desirable(value, row, split, cfg.label_column) for row, value in enumerate(ds[cfg.label_column])]
    return Dataset.from_dict({"prompt": [str(v or "") for v in ds[cfg.prompt_column]],
                              "completion": [str(v or "") for v in ds[cfg.completion_column]], "desirable": labels})


def desirable(value, row: int, split: str, column: str) -> bool:
    key = str(value).strip().lower() if isinstance(value, (str, bool, int)) else None
    if key not in DESIRABLE:
        raise ConfigError(f"data.label_column={column!r}: row {row + 1} of the {split} split holds {value!r}; KTO "
                          "labels say whether the completion is desirable: true or false (or 1/0). Fix that row or "
                          "point data.label_column at the label column.")
    return DESIRABLE[key]


def _rows_of_pairs(pairs: Dataset) -> Dataset:
    """Two rows per pair: (prompt, chosen, desirable), (prompt, rejected, undesirable)."""
    rows = {"prompt": [], "completion": [], "desirable": []}
    for pair in pairs:
        for answer, label in ((pair["chosen"], True), (pair["rejected"], False)):
            rows["prompt"].append(pair["prompt"])
            rows["completion"].append(answer)
            rows["desirable"].append(label)
    return Dataset.from_dict(rows)


def encode_unpaired(cfg, splits: DatasetDict, encoder: PairEncoder) -> DatasetDict:
    """Token ids per row: `input_ids` (prompt + completion + EOS), `prompt_length`, `desirable`."""

    def read(row) -> EncodedRow | str:
        if not row["prompt"].strip() or not row["completion"].strip():
            return "empty"
        fitted = encoder.fit(row["prompt"], [row["completion"]])
        if isinstance(fitted, str):
            return fitted
        prompt, (completion,), truncated = fitted
        return EncodedRow(prompt, completion, row["desirable"], truncated)

    def features(row: EncodedRow) -> dict:
        return {"input_ids": row.prompt + row.completion, "prompt_length": len(row.prompt),
                "desirable": row.desirable}

    return encode_pairs(cfg, splits, encoder, features, read=read, noun="rows")
