"""The tokenization cache's key: a hash of everything that can change what a task's encoding writes.

It covers the task, the data settings that shape rows (not batching or training), the augmentation settings
(`augment`, when on: augmented train rows differ), the seed (it carves and subsets splits, and seeds augmentation), each local data file's path, size and modification time (Hub data: its id and config), the
tokenizer's full serialized state, and ENCODING_VERSION. Any doubt resolves towards a miss: unknown data keys
are part of the key.
"""

import hashlib
import json
import tempfile
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lft.data.augment import augment_settings
from lft.data.sources import split_files

# Bump when encoding code changes what it writes for the same inputs: older cache entries then miss.
ENCODING_VERSION = 2  # 2: evaluation rows name their reference columns

# Data settings that shape batches, training or evaluation, never the encoded rows.
NOT_ENCODING = frozenset({"batch_size", "eval_batch_size", "num_workers", "group_by_length", "packing", "monitor",
                          "preference", "cache"})
# Of data.generate, only these reach the rows (their `generate` flag); the rest are decoding settings.
GENERATE_ROW_FLAGS = ("val_samples", "test_samples")
# Tokenizer attributes outside the backend's serialized state that change ids (absent ones are skipped).
TOKENIZER_FLAGS = ("padding_side", "truncation_side", "model_max_length", "split_special_tokens", "add_bos_token",
                   "add_eos_token", "clean_up_tokenization_spaces")


def encoding_key(task: str, data_cfg: DictConfig, seed: int, tokenizer, augment=None) -> tuple[str, dict]:
    """(sha256 hex digest, the readable parts it hashes). augment=none adds nothing, so such keys stay as before."""
    parts = {"version": ENCODING_VERSION, "task": task, "seed": seed, "data": encoding_settings(data_cfg),
             "files": data_stamp(data_cfg), "tokenizer": tokenizer_stamp(tokenizer)}
    if augment_settings(augment) is not None:
        parts["augment"] = augment_settings(augment)
    return hashlib.sha256(_canonical(parts).encode()).hexdigest(), parts


def encoding_settings(data_cfg: DictConfig) -> dict:
    settings = {k: v for k, v in OmegaConf.to_container(data_cfg, resolve=True).items() if k not in NOT_ENCODING}
    if isinstance(settings.get("generate"), dict):
        settings["generate"] = {k: settings["generate"].get(k) for k in GENERATE_ROW_FLAGS}
    return settings


def data_stamp(data_cfg: DictConfig) -> dict:
    """Local files: {split: [absolute path, size, mtime_ns]}, so an edited file misses. Hub data: id and config."""
    if not data_cfg.get("path"):
        return {"hub_id": data_cfg.get("hub_id"), "hub_config": data_cfg.get("hub_config")}
    stamps = {}
    for split, file in split_files(data_cfg.path).items():
        stat = file.stat()
        stamps[split] = [str(file.resolve()), stat.st_size, stat.st_mtime_ns]
    return stamps


def tokenizer_stamp(tokenizer) -> dict:
    flags = {name: getattr(tokenizer, name) for name in TOKENIZER_FLAGS if hasattr(tokenizer, name)}
    return {"name_or_path": str(tokenizer.name_or_path), "class": type(tokenizer).__name__,
            "special_tokens": {k: str(v) for k, v in tokenizer.special_tokens_map.items()},
            "all_special_tokens": [str(t) for t in tokenizer.all_special_tokens],
            "chat_template": getattr(tokenizer, "chat_template", None), **flags,
            "serialized_sha256": _serialized_hash(tokenizer)}


def _serialized_hash(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        # Each call with truncation= or padding= rewrites these two; they do not change unpadded, per-call ids.
        state.pop("truncation", None)
        state.pop("padding", None)
        return hashlib.sha256(_canonical(state).encode()).hexdigest()
    digest = hashlib.sha256()  # a tokenizer without a Rust backend: hash the files it saves
    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save_pretrained(folder)
        for file in sorted(Path(folder).rglob("*")):
            if file.is_file():
                digest.update(file.name.encode())
                digest.update(file.read_bytes())
    return digest.hexdigest()


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str, separators=(",", ":"))
