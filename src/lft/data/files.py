"""Read one local data file into a Dataset, or fail with one message naming the file, the line and the fix.

`datasets` reports a bad file as a library error inside a traceback (StopIteration for an empty file, pandas and
pyarrow errors for broken rows, "Instruction 'train' corresponds to no data!" for a header-only CSV). A look at the
first bytes catches empty and falsely-gzipped files; what `load_dataset` raises is translated, and where the
library gives no usable line number the file is scanned for it (only on that error path).
"""

import codecs
import gzip
import json
import logging
import re
from contextlib import contextmanager
from pathlib import Path

from datasets import Dataset, load_dataset

from lft.config.errors import ConfigError

# File suffix (after stripping .gz) -> datasets builder and its options.
FORMATS = {
    ".jsonl": ("json", {}),
    ".json": ("json", {}),
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"delimiter": "\t"}),
    ".parquet": ("parquet", {}),
    ".txt": ("text", {}),
}
GZIP_MAGIC = b"\x1f\x8b"


def suffix(file: Path) -> str:
    """The format suffix, ignoring a trailing .gz: train.jsonl.gz -> .jsonl."""
    suffixes = [s.lower() for s in file.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def read_data_file(file: Path, encoding: str = "utf-8") -> Dataset:
    builder, options = FORMATS[suffix(file)]
    _check_first_bytes(file)
    if encoding.lower().replace("-", "") != "utf8" and builder != "parquet":
        options = {**options, "encoding": encoding}  # only when set: keeps the cache key of UTF-8 files unchanged
    try:
        with _quiet_builders():
            ds = load_dataset(builder, data_files=str(file), split="train", **options)
    except Exception as err:  # datasets, pandas, pyarrow and gzip each raise their own types for a bad file
        raise ConfigError(f"data file {file} {_explain(err, file, builder, encoding)}") from err
    if len(ds) == 0:
        raise ConfigError(f"data file {file} {_no_rows(builder)}")
    if builder == "json" and "encoding" not in options:
        _check_decodable(file, encoding)
    return ds


@contextmanager
def _quiet_builders():
    """The builders log each failure before raising it; the ConfigError below says it once, better."""
    builders = logging.getLogger("datasets.packaged_modules")
    level = builders.level
    builders.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        builders.setLevel(level)


def _check_first_bytes(file: Path) -> None:
    try:
        with open(file, "rb") as f:
            head = f.read(2)
    except OSError as err:
        raise ConfigError(f"data file {file} cannot be read ({err.strerror}); check its permissions.") from err
    if not head:
        raise ConfigError(f"data file {file} is empty (0 bytes); write the data into it or point data.path elsewhere.")
    if file.suffix.lower() == ".gz" and head != GZIP_MAGIC:
        raise ConfigError(f"data file {file} ends in .gz but is not gzip-compressed; rename it to {file.stem!r} "
                          f"or compress it with gzip.")


def _explain(err: Exception, file: Path, builder: str, encoding: str) -> str:
    """What is wrong with the file and what to do, from the exception chain datasets raised."""
    chain = _chain(err)
    root = chain[-1]
    if any(isinstance(e, UnicodeDecodeError) for e in chain):
        return _undecodable(file, encoding)
    if any(isinstance(e, StopIteration) or "corresponds to no data" in str(e) for e in chain):
        return _no_rows(builder)
    if any(isinstance(e, (EOFError, gzip.BadGzipFile)) for e in chain):
        return f"is a damaged gzip file ({_short(root)}); compress it again, or store it uncompressed."
    if builder == "json":
        bad = _first_bad_json_line(file, encoding)
        if bad:
            return (f"is not valid JSON: line {bad[0]} {bad[1]}; write one JSON object per line (.jsonl) "
                    f"or one array of objects (.json).")
    if builder == "csv":
        ragged = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(root))
        if ragged:
            expected, line, saw = ragged.groups()
            return (f"has {saw} fields on line {line} where the header has {expected}; quote fields that contain "
                    f"the delimiter, or fix that row.")
    if builder == "parquet":
        return f"is not a readable parquet file ({_short(root)}); write it with pandas.DataFrame.to_parquet."
    return (f"could not be read as {builder} ({_short(root)}); check that its content matches its suffix "
            f"({', '.join(FORMATS)}).")


def _check_decodable(file: Path, encoding: str) -> None:
    """pyarrow's JSON reader loads bytes that are not UTF-8 without a word; reading such a row fails mid-run."""
    decoder = codecs.getincrementaldecoder(encoding)()
    with _open(file, "rb") as f:
        try:
            while chunk := f.read(1 << 24):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise ConfigError(f"data file {file} {_undecodable(file, encoding)}") from None


def _undecodable(file: Path, encoding: str) -> str:
    line, raw = _first_undecodable_line(file, encoding)
    return (f"is not {encoding} text (line {line} holds the bytes {raw!r}); save it as UTF-8, or name its "
            f"encoding, e.g. data.encoding=latin-1.")


def _no_rows(builder: str) -> str:
    header = " (a header only?)" if builder == "csv" else ""
    return f"holds no data rows{header}; add rows or point data.path at another file."


def _chain(err: BaseException) -> list[BaseException]:
    chain = [err]
    while (nxt := chain[-1].__cause__ or chain[-1].__context__) is not None and nxt not in chain:
        chain.append(nxt)
    return chain


def _short(err: BaseException) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())}"[:200]


def _open(file: Path, mode: str, encoding: str | None = None):
    return (gzip.open if file.suffix.lower() == ".gz" else open)(file, mode, encoding=encoding)


def _first_undecodable_line(file: Path, encoding: str) -> tuple[int, bytes]:
    with _open(file, "rb") as f:
        for number, line in enumerate(f, 1):
            try:
                line.decode(encoding)
            except UnicodeDecodeError as err:
                return number, line[err.start: err.end]
    return 0, b""


def _first_bad_json_line(file: Path, encoding: str) -> tuple[int, str] | None:
    """(line number, what is wrong) of the first line that is not a JSON object; None when none is found."""
    with _open(file, "rt", encoding) as f:
        text = f.read()
    if text.lstrip().startswith("["):  # one JSON array: the parser's own position is the line
        try:
            json.loads(text)
        except json.JSONDecodeError as err:
            return err.lineno, f"is broken ({err.msg})"
        return None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            return number, f"is not JSON ({err.msg} at column {err.colno})"
        if not isinstance(row, dict):
            return number, f"is a JSON {type(row).__name__}, not an object"
    return None
