"""Raw train/validation/test splits from the Hugging Face Hub or local files, with random subsets."""

import logging
from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset

from lft.config.errors import ConfigError
from lft.config.schema import default
from lft.data.files import FORMATS, read_data_file, suffix
from lft.data.values import Column, check_values

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
SPLIT_ALIASES = {"train": ("train",), "validation": ("validation", "valid", "val", "dev"), "test": ("test",)}


def load_splits(cfg, seed: int, columns: list[Column] = ()) -> DatasetDict:
    """Load the splits named by a data config, check the values of `columns` as read (data/values.py), carve
    missing validation/test from train, then subset."""
    if cfg.get("path"):
        files = split_files(cfg.path)
        encoding = cfg.get("encoding") or "utf-8"
        splits = {split: read_data_file(file, encoding) for split, file in files.items()}
        where = {split: str(file) for split, file in files.items()}
    elif cfg.get("hub_id"):
        splits = _load_hub(cfg.hub_id, cfg.get("hub_config"))
        where = {split: f"the {split} split of {cfg.hub_id}" for split in splits}
    else:
        raise ConfigError("data: set data.path (local files) or data.hub_id (a Hugging Face dataset id).")
    splits = {split: check_values(ds, list(columns), where[split], cfg.get("max_bad_fraction"))
              for split, ds in splits.items()}
    if "train" not in splits:
        raise ConfigError(f"data: no train split found (found {sorted(splits)}); name a file train.* or pass data.path={{train: ...}}.")
    fraction = cfg.get("val_fraction", default("data.val_fraction"))
    for missing in [s for s in ("validation", "test") if s not in splits]:
        if not 0 < fraction < 1:
            raise ConfigError(f"data: the data has no {missing} split; set data.val_fraction in (0, 1) to carve one from train.")
        if len(splits["train"]) < 2:
            raise ConfigError(f"data: the train split has {len(splits['train'])} row(s), too few to carve a {missing} "
                              f"split from; add rows or a {missing} file.")
        parts = splits["train"].train_test_split(test_size=fraction, seed=seed)
        splits["train"], splits[missing] = parts["train"], parts["test"]
        log.info("Carved a %s split of %d rows from train.", missing, len(splits[missing]))
    sizes = {"train": cfg.get("train_size"), "validation": cfg.get("val_size"), "test": cfg.get("test_size")}
    for split, size in sizes.items():
        if size is not None and size < len(splits[split]):
            splits[split] = splits[split].shuffle(seed=seed).select(range(size))
    for split in SPLITS:
        if len(splits[split]) == 0:
            raise ConfigError(f"data: the {split} split is empty; check data.path / data.hub_id and the subset sizes.")
    return DatasetDict({s: splits[s] for s in SPLITS})


def _load_hub(hub_id: str, config: str | None) -> dict[str, Dataset]:
    try:
        loaded = load_dataset(hub_id, config)
    except Exception as err:  # datasets raises many types for "not reachable" / "not found"
        raise ConfigError(
            f"data.hub_id={hub_id!r} could not be loaded ({type(err).__name__}: {err}). "
            "Offline? Point data.path at local files instead."
        ) from err
    return _by_canonical_name(dict(loaded))


def split_files(path) -> dict[str, Path]:
    """{split: file} named by data.path (a folder, one file, or a mapping), each checked to be a file of a known format."""
    if not isinstance(path, str):  # a mapping {split: file}
        files = {split: Path(str(f)).expanduser() for split, f in dict(path).items()}
    else:
        root = Path(path).expanduser()
        if not root.exists():
            raise ConfigError(f"data.path={path!r} does not exist; give a folder of split files, a file, or {{train: file, ...}}.")
        if root.is_file():
            files = {"train": root}
        else:
            files = {}
            for file in sorted(p for p in root.iterdir() if suffix(p) in FORMATS):
                files.setdefault(file.name.split(".")[0].lower(), file)
            if not files:
                raise ConfigError(f"data.path={path!r} holds no data files ({', '.join(FORMATS)}, optionally .gz).")
    files = _by_canonical_name(files)
    for split, file in files.items():
        if not file.is_file():
            problem = "is a folder, not a file" if file.is_dir() else "does not exist"
            raise ConfigError(f"data.path: the {split} file {str(file)!r} {problem}.")
        if suffix(file) not in FORMATS:
            raise ConfigError(f"data.path: {file.name!r} has an unknown format; use one of {', '.join(FORMATS)} (optionally .gz).")
    return files


def _by_canonical_name(items: dict) -> dict:
    """Rename split aliases (val, dev, valid) to train/validation/test; drop other splits."""
    renamed = {}
    for split, aliases in SPLIT_ALIASES.items():
        for alias in aliases:
            if alias in items:
                renamed[split] = items[alias]
                break
    return renamed


def require_columns(splits: DatasetDict, columns: dict[str, str | None]) -> None:
    """Fail with the config key to fix when a configured column is missing from a split (values: data/values.py)."""
    for key, column in columns.items():
        if column is None:
            continue
        for split, ds in splits.items():
            if column not in ds.column_names:
                raise ConfigError(
                    f"data.{key}={column!r} is not a column of the {split} split "
                    f"(columns: {', '.join(ds.column_names)}); set data.{key} to one of them."
                )
