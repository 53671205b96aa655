"""Tokenized splits cached on disk: a second run with the same data, tokenizer and settings skips encoding.

An entry is the folder <paths.cache_dir>/tokenized/<key> (key: lft/data/fingerprint.py): the DatasetDict as
save_to_disk writes it, plus entry.json with what the task derived from the data (e.g. inferred label names), so
a hit restores it without reading the data, and the parts of the key in readable form. Entries are written to a
.partial folder and renamed: an interrupted run never leaves one that looks complete, and of two processes
writing the same entry (DDP ranks, parallel sweeps) the first rename wins.
"""

import json
import logging
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from datasets import DatasetDict, load_from_disk

from lft.data.fingerprint import encoding_key

log = logging.getLogger(__name__)
FOLDER = "tokenized"
ENTRY_FILE = "entry.json"


def cached_encoding(produce: Callable[[], tuple[DatasetDict, dict]], *, task: str, data_cfg, tokenizer, seed: int,
                    cache_dir, augment=None) -> tuple[DatasetDict, dict]:
    """produce() -> (encoded splits, JSON-able metadata), or both from the cache entry with the same key.

    augment: the run's `augment` settings, which produce() applies to the train split (part of the key).

    No cache_dir, or data.cache=false: always produce(), and write nothing.
    """
    if not cache_dir or not data_cfg.get("cache", True):
        return produce()
    key, parts = encoding_key(task, data_cfg, seed, tokenizer, augment)
    entry = Path(cache_dir).expanduser() / FOLDER / key
    stored = _load(entry)
    if stored is not None:
        log.info("Tokenized splits loaded from cache %s (key %s).", entry, key[:12])
        return stored
    splits, metadata = produce()
    if _save(entry, splits, {"metadata": metadata, "key": parts}):
        # The stored copy, not the fresh one: save/load renews dataset fingerprints, and the run manifest should
        # name the same ones whether this run tokenized or a later one hits.
        return _load(entry) or (splits, metadata)
    return splits, metadata


def _load(entry: Path) -> tuple[DatasetDict, dict] | None:
    if not (entry / ENTRY_FILE).is_file():
        return None
    try:
        return load_from_disk(str(entry)), json.loads((entry / ENTRY_FILE).read_text())["metadata"]
    except (OSError, ValueError, KeyError) as err:  # a damaged entry (files deleted by hand): encode again
        log.warning("Tokenization cache entry %s is unreadable (%s); encoding again.", entry, err)
        shutil.rmtree(entry, ignore_errors=True)
        return None


def _save(entry: Path, splits: DatasetDict, record: dict) -> bool:
    """Write the entry atomically; False where the cache cannot be written (that costs speed, not the run)."""
    try:
        partial = entry.with_name(f"{entry.name}.{uuid.uuid4().hex[:8]}.partial")  # one per writing process
        partial.mkdir(parents=True)
    except OSError as err:
        log.warning("Tokenized splits not cached: %s is not writable (%s).", entry.parent, err)
        return False
    try:
        splits.save_to_disk(str(partial))
        (partial / ENTRY_FILE).write_text(json.dumps(record, indent=1, ensure_ascii=False, default=str))
        partial.rename(entry)  # atomic; fails when another process renamed the same entry first
        log.info("Tokenized splits saved to cache %s (key %s).", entry, entry.name[:12])
    except OSError as err:
        shutil.rmtree(partial, ignore_errors=True)
        if not (entry / ENTRY_FILE).is_file():
            log.warning("Tokenized splits not cached in %s (%s).", entry, err)
            return False
    return True
