"""Runs that differ only in some overrides (`--over seed`) as one row: each metric's mean, spread and count.

The spread is the sample standard deviation (n - 1) over the group's finished runs; a metric only some of them
have is averaged over those, and its count says how many. A group with a run still going or failed says so in its
state and error, so a missing seed is never hidden inside a mean.
"""

import math
import statistics
from pathlib import Path


def numeric(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def group_key(row: dict, over: list[str]) -> tuple:
    return tuple(sorted((k, v) for k, v in row["overrides"].items() if k not in over))


def aggregate(rows: list[dict], over: list[str]) -> list[dict]:
    """One row per group of runs whose overrides agree outside `over`, in first-seen order."""
    unset = [key for key in over if not any(key in r["overrides"] for r in rows)]
    if unset:
        raise SystemExit(f"lft.report --over {' '.join(unset)}: no run sets it on its command line (its overrides); "
                         "name an override the runs differ in, e.g. --over seed for runs started with seed=1, 2, 3.")
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(group_key(row, over), []).append(row)
    return [merge(members, over) for members in groups.values()]


def merge(members: list[dict], over: list[str]) -> dict:
    finished = [m for m in members if m["state"] == "finished"]
    keys = list(dict.fromkeys(k for m in finished for k, v in m["metrics"].items() if numeric(v)))
    metrics, spread = {}, {}
    for key in keys:
        values = [m["metrics"][key] for m in finished if numeric(m["metrics"].get(key))]
        same = len(set(values)) == 1  # a setting all seeds share (trainable params): itself, no spread
        metrics[key] = values[0] if same else statistics.fmean(values)
        spread[key] = (None if same or len(values) < 2 else statistics.stdev(values), len(values))
    others = [m for m in members if m["state"] != "finished"]  # the group is finished only when all are
    first = members[0]
    parents = {str(Path(m["dir"]).parent) for m in members}
    # Seeds laid out as <recipe>/<seed>/: the group is the recipe's folder.
    folder = Path(parents.pop()) if len(parents) == 1 and len(members) > 1 else Path(first["dir"])
    return {
        "dir": str(folder), "name": folder.name,
        "overrides": {k: v for k, v in first["overrides"].items() if k not in over},
        "metrics": metrics, "spread": spread, "runs": len(members),
        "state": others[0]["state"] if others else "finished", "monitor": first["monitor"], "mode": first["mode"],
        "error": "; ".join(f"{m['name']} {m['state']}{': ' + m['error'] if m['error'] else ''}" for m in others),
    }
