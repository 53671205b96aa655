"""How runs are named in a report: by the overrides that vary across them, in short keys and values."""

import math
import re
from collections import Counter
from pathlib import Path


def short_value(value: str) -> str:
    """Long floats from samplers (0.000123456789) as 3 significant digits, long paths as their last part
    (.../name); everything else as written."""
    if "/" in str(value) and len(str(value)) > 24 and str(value).strip("/"):
        return ".../" + str(value).rstrip("/").rsplit("/", 1)[-1]
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if value.lstrip("+-").isdigit() or math.isnan(number) or math.isinf(number):
        return str(value)
    return f"{number:.3g}"


def split_overrides(rows: list[dict]) -> tuple[list[str], dict[str, str]]:
    """The override keys whose values differ across the rows (a key missing from some rows varies too), and the
    constant ones with their value."""
    keys = list(dict.fromkeys(k for r in rows for k in r["overrides"]))
    varying = [k for k in keys if len({r["overrides"].get(k) for r in rows}) > 1]
    common = {k: rows[0]["overrides"][k] for k in keys if k not in varying}
    return varying, common


def short_keys(keys: list[str]) -> dict[str, str]:
    """The shortest dotted suffix that tells each key apart: optimizer.lr -> lr, unless strategy.lr varies too."""
    out = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            if not any(other != key and (other == suffix or other.endswith("." + suffix)) for other in keys):
                break
        out[key] = suffix
    return out


# --- metric, direction, order ------------------------------------------------------------------------------------


# Folder names Hydra makes (job numbers, timestamps), as opposed to names a user chose.
GENERATED_NAME = re.compile(r"\d+|\d{4}-\d{2}-\d{2}[_T][\d-]+.*")


def label_rows(rows: list[dict]) -> tuple[list[str], dict[str, str]]:
    """Sets each row's label (varying overrides, full keys) and short label for plots (short keys, or the folder
    names where the user chose them)."""
    varying, common = split_overrides(rows)
    short = short_keys(varying)
    for r in rows:
        present = [k for k in varying if k in r["overrides"]]
        r["label"] = " ".join(f"{k}={short_value(r['overrides'][k])}" for k in present) or r["name"]
        r["short_label"] = " ".join(f"{short[k]}={short_value(r['overrides'][k])}" for k in present) or r["name"]
    names = unique_names(rows)
    if len(set(names)) == len(names) and not any(GENERATED_NAME.fullmatch(n.rsplit("/", 1)[-1]) for n in names):
        for r, name in zip(rows, names, strict=True):  # folders the user named (.../lora, .../lora/seed1) say more
            r["short_label"] = name                      # in a plot than long overrides
    for key in ("label", "short_label"):  # two runs with the same overrides: tell them apart by folder
        counts = Counter(r[key] for r in rows)
        for r in rows:
            if counts[r[key]] > 1 and r[key] != r["name"]:
                r[key] += f" [{r['name']}]"
    return varying, common


def unique_names(rows: list[dict]) -> list[str]:
    """Each run's folder name, with as many parent folders as it takes to tell the runs apart (seeds laid out as
    <recipe>/seed1: full/seed1, lora/seed1)."""
    parts = [Path(r.get("dir") or r["name"]).parts for r in rows]
    for n in range(1, max(map(len, parts)) + 1):
        names = ["/".join(p[-n:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [r["name"] for r in rows]
