"""Every value a data file can hold, in every column lft reads: kept, converted as documented, or refused.

A JSON line, a CSV cell or a parquet field can hold text, a number, a boolean, null, a list or an object, and
`datasets` loads a column that mixes them as it is. Left alone, each ends somewhere else: a tokenizer's
"text input must be of type str" mid-encoding, `str(None)` trained as the word "None", a label "None" inferred as
a class. So each column lft reads is declared here with what it holds (`Column`), and the splits are checked as
they are read, before any carving, subsetting or tokenizing (row numbers are the file's own):

  value                       text          template field   target / reference   label
  a string                    kept          kept             kept                 a class name
  an integer or a float       refused       formatted        its text             a class index (whole floats)
  a boolean                   refused       refused          refused              a class name (True/False)
  a list or an object         refused       refused          refused              refused
  null, "" or blank text      missing       missing          missing              missing

A missing value in a required column makes the row unusable: such rows are dropped and counted per split, with
a warning, and past `data.max_bad_fraction` of a split (default 0.05) encoding stops with one message. Columns
whose emptiness means something keep the row with "" there (Alpaca's optional `input`, a reference a row lacks,
a blank line of raw text, a preference answer, which the pair encoder counts as unusable itself).
"""

import logging
import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, Value

from lft.config.errors import ConfigError

log = logging.getLogger(__name__)

TEXT = frozenset({"text"})  # the text itself: a number there means the wrong column
FIELD = frozenset({"text", "integer", "float"})  # a template formats numbers like str.format does
ANSWER = FIELD  # an answer may be a number (a CSV reader types a column of numbers as numbers)
LABEL = frozenset({"text", "integer", "float", "boolean"})  # names or indices; floats only whole (CSV with gaps)
MISSING = ("null", "blank")
DEFAULT_MAX_BAD_FRACTION = 0.05


@dataclass(frozen=True)
class Column:
    key: str  # the data setting that names the column, e.g. "text_column"
    name: str
    accepts: frozenset[str]  # value kinds kept (see the table above)
    required: bool = True  # a row missing it is dropped and counted; else kept with "" there

    @property
    def named(self) -> str:
        """How messages name it: by its setting, or (one of a template's or a list's columns) with its setting."""
        if self.key in ("template", "reference_columns"):
            return f"column {self.name!r} (data.{self.key})"
        return f"data.{self.key}={self.name!r}"


# --- the columns each task reads ----------------------------------------------------------------------------------
def classification_columns(cfg) -> list[Column]:
    pair = [Column("text_pair_column", cfg.text_pair_column, TEXT)] if cfg.get("text_pair_column") else []
    return [Column("text_column", cfg.text_column, TEXT), *pair, Column("label_column", cfg.label_column, LABEL)]


def raw_text_columns(cfg) -> list[Column]:
    return [Column("text_column", cfg.text_column, TEXT, required=False)]  # a blank line adds no tokens


def text_to_text_columns(cfg, template) -> list[Column]:
    """The template's fields (its optional one may be empty), the target, and the references a row may lack."""
    key = "template" if cfg.get("template") else "source_column"
    fields = [Column(key, c, FIELD, required=c != template.optional) for c in template.columns()
              if c != cfg.target_column]
    references = [Column("reference_columns", c, ANSWER, required=False) for c in cfg.get("reference_columns") or []]
    return [*fields, Column("target_column", cfg.target_column, ANSWER), *references]


def preference_columns(cfg) -> list[Column]:
    """Empty answers and prompts stay: the pair encoder drops and counts them with the pairs it cannot use."""
    prompt = [Column("prompt_column", cfg.prompt_column, TEXT, required=False)] if cfg.get("prompt_column") else []
    return [*prompt, Column("chosen_column", cfg.chosen_column, TEXT, required=False),
            Column("rejected_column", cfg.rejected_column, TEXT, required=False)]


def kind(value) -> str:
    """What a loaded value is, in the words messages use."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "null"
    if isinstance(value, str):
        return "text" if value.strip() else "blank"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def check_values(ds: Dataset, columns: list[Column], where: str, max_bad_fraction: float | None) -> Dataset:
    """`ds` with every declared column checked: refused values raise, rows missing a required value are dropped
    (one error past max_bad_fraction), kept missing values become "", whole-number float labels integers."""
    limit = DEFAULT_MAX_BAD_FRACTION if max_bad_fraction is None else float(max_bad_fraction)
    kinds = {c: _kinds(ds, c, where) for c in columns if c.name in ds.column_names}  # absent: the readers report it
    missing = {c: np.flatnonzero(np.isin(k, MISSING)) for c, k in kinds.items()}
    dropped = _drop_missing(ds, {c: rows for c, rows in missing.items() if c.required and len(rows)}, where, limit)
    keep = np.setdiff1d(np.arange(len(ds)), dropped)
    ds = ds.select(keep) if len(dropped) else ds
    for column, column_kinds in kinds.items():
        if not column.required and "null" in column_kinds:
            ds = ds.map(_nulls_as_empty, fn_kwargs={"column": column.name}, batched=True)
        if column.accepts is LABEL and "float" in column_kinds:  # 1.0 is class 1 (CSV integers with a gap)
            float_column = getattr(ds.features[column.name], "dtype", "").startswith("float")
            ds = ds.cast_column(column.name, Value("int64")) if float_column else \
                ds.map(_whole_floats_as_ints, fn_kwargs={"column": column.name}, batched=True)
    return ds


def _kinds(ds: Dataset, column: Column, where: str) -> np.ndarray:
    """The kind of every value of the column; raises at the first value the column refuses."""
    values = ds.with_format("arrow")[column.name]
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):  # Arrow says it all, fast
        blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(values), ""), False).to_numpy(zero_copy_only=False)
        nulls = pc.is_null(values).to_numpy(zero_copy_only=False)
        return np.where(nulls, "null", np.where(blank, "blank", "text"))
    python_values = list(ds[column.name])  # numbers, booleans, lists, objects, or a mix of them (a Json column)
    kinds = np.array([kind(v) for v in python_values], dtype=object)
    for row, (value_kind, value) in enumerate(zip(kinds, python_values, strict=True)):
        whole = value_kind != "float" or column.accepts is not LABEL or float(value).is_integer()
        if value_kind not in MISSING and (value_kind not in column.accepts or not whole):
            raise ConfigError(refusal(column, row, value, value_kind, where, ds.column_names))
    return kinds


def _drop_missing(ds: Dataset, missing: dict[Column, np.ndarray], where: str, limit: float) -> np.ndarray:
    if not missing:
        return np.array([], dtype=np.int64)
    rows = np.unique(np.concatenate(list(missing.values())))
    detail = "; ".join(f"{c.named}: {len(r)} ({_rows(r)})" for c, r in missing.items())
    if len(rows) > limit * len(ds):
        raise ConfigError(
            f"data: {len(rows)} of {len(ds)} rows of {where} have no value in a column lft needs ({detail}; null, a "
            f"missing key, an empty cell or blank text), over data.max_bad_fraction={limit:g}. Fill or remove those "
            "rows, or raise data.max_bad_fraction to drop them.")
    log.warning("Dropped %d of %d rows of %s with no value in a column lft needs (%s).", len(rows), len(ds), where,
                detail)
    return rows


def _rows(rows: np.ndarray, shown: int = 5) -> str:
    numbers = ", ".join(str(r + 1) for r in rows[:shown])
    return f"row{'s' if len(rows) > 1 else ''} {numbers}{', ...' if len(rows) > shown else ''}"


def _nulls_as_empty(batch: dict, column: str) -> dict:
    return {column: ["" if kind(v) == "null" else v for v in batch[column]]}


def _whole_floats_as_ints(batch: dict, column: str) -> dict:
    return {column: [int(v) if isinstance(v, float) else v for v in batch[column]]}


WHAT = {"text": "text", "blank": "blank text", "null": "null", "integer": "an integer", "float": "a number",
        "boolean": "a boolean", "list": "a list", "object": "an object"}
EXPECTED = {TEXT: "text (a string)", FIELD: "text or a number", LABEL: "a class name or an integer class index"}


def refusal(column: Column, row: int, value, value_kind: str, where: str, names: list[str]) -> str:
    """One line: the setting and column, the row (counted from 1, as the file lists them), what is there, the fix."""
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    head = (f"{column.named}: row {row + 1} of {where} holds {WHAT.get(value_kind, value_kind)} "
            f"({shown}), not {EXPECTED[column.accepts]}; ")
    if column.accepts is LABEL:
        if value_kind == "float":
            return head + ("class labels are names or whole-number indices; fractional targets are regression, "
                           "which lft's classification does not train. Fix that row or data.label_column.")
        return head + ("lft's classification takes one label per row; give each row one class name or index, or "
                       f"point data.label_column at another column (columns: {', '.join(names)}).")
    if value_kind in ("list", "object"):
        return head + ("lft reads one string per row there; join the parts into one string (chat messages: render "
                       f"them as text), or point data.{column.key} at a text column (columns: {', '.join(names)}).")
    if column.accepts is TEXT:
        return head + (f"{'a boolean' if value_kind == 'boolean' else 'a number'} there usually means data.{column.key} "
                       f"names the wrong column; point it at the "
                       f"text column (columns: {', '.join(names)}), or store the value as a string.")
    return head + "store it as text (e.g. \"yes\"/\"no\" for a boolean), or fix that row."
