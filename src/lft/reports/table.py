"""The report of run folders: a table of their metrics (markdown and CSV) and plots, best run first."""

import csv
import fnmatch
import json
import math
from collections import Counter
from pathlib import Path

import yaml

from lft.reports.labels import label_rows
from lft.runs import layout

LOWER_IS_BETTER = ("loss", "perplexity", "ppl", "error", "seconds", "_mb")
RESOURCE_COLUMNS = (("trainable_params", "trainable params"), ("fit_seconds", "fit s"),
                    ("peak_rss_mb", "peak RSS MB"), ("peak_gpu_mb", "peak GPU MB"))
STATE_ORDER = {"finished": 0, "running": 1, "stopped": 2, "failed": 3}


# --- finding and reading runs ------------------------------------------------------------------------------------

def is_run(folder: Path) -> bool:
    return ((folder / layout.METRICS).is_file() or (folder / layout.FAILED).is_file()
            or (folder / layout.HYDRA).is_dir())


def find_runs(folder: Path) -> list[Path]:
    """Run folders at or below folder, sweep jobs in number order; a run's own subfolders (resumes/) are not runs."""
    if is_run(folder):
        return [folder]
    children = [c for c in folder.iterdir() if c.is_dir() and not c.is_symlink() and not c.name.startswith(".")]
    children.sort(key=lambda c: (0, int(c.name), "") if c.name.isdigit() else (1, 0, c.name))
    return [run for child in children for run in find_runs(child)]


def parse_overrides(overrides: list[str]) -> dict[str, str]:
    """`key=value` command-line overrides as {key: value}; hydra.* settings are left out."""
    out = {}
    for item in overrides or []:
        item = str(item)
        key, _, value = item.partition("=")
        if key.startswith("~"):
            key, value = key[1:], "(deleted)"
        key = key.lstrip("+")
        if key and not key.startswith("hydra.") and key != "hydra":
            out[key] = value
    return out


def read_monitor(run: Path) -> tuple[str | None, str | None]:
    """monitor.metric and monitor.mode from the run's resolved config.yaml, else Hydra's .hydra/config.yaml."""
    for path in (run / layout.CONFIG, run / layout.HYDRA / layout.CONFIG):
        if not path.is_file():
            continue
        try:
            from omegaconf import OmegaConf

            monitor = OmegaConf.load(path).get("monitor") or {}
            return str(monitor.get("metric")), str(monitor.get("mode"))
        except Exception:  # an interpolation that needs Hydra's runtime: try the next file
            continue
    return None, None


def read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as err:  # half-written or damaged: the row says so instead of the report failing
        return {"error": f"{path.name} unreadable ({err})", "type": "ReportError"}
    return value if isinstance(value, dict) else {}


def read_run(run: Path) -> dict:
    overrides_file = run / layout.HYDRA / layout.HYDRA_OVERRIDES
    overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
    metrics_file, failed_file = run / layout.METRICS, run / layout.FAILED
    row = {"dir": str(run), "name": run.name, "overrides": parse_overrides(overrides), "metrics": {}, "error": ""}
    if metrics_file.is_file():  # a finished run (a failed run resumed to the end has both files)
        row["state"], row["metrics"] = "finished", read_json(metrics_file)
    elif failed_file.is_file():
        failure = read_json(failed_file)
        row["state"] = "stopped" if failure.get("type") == "RunStopped" else "failed"
        row["error"] = f"{failure.get('type', 'Error')}: {failure.get('error', '')}".strip()
    else:
        row["state"] = "running"
    row["monitor"], row["mode"] = read_monitor(run)
    return row


def collect(folders: list[Path]) -> list[dict]:
    return [read_run(run) for folder in folders for run in find_runs(folder)]


# --- labels ------------------------------------------------------------------------------------------------------


def base_name(metric: str) -> str:
    return metric.removeprefix("best_").split("/", 1)[-1]


def lower_is_better(metric: str, monitor: str | None = None, mode: str | None = None) -> bool:
    if monitor and mode in ("min", "max") and base_name(metric) == base_name(monitor):
        return mode == "min"
    return any(word in metric.lower() for word in LOWER_IS_BETTER)


def most_common(values) -> str | None:
    values = [v for v in values if v and v != "None"]
    return Counter(values).most_common(1)[0][0] if values else None


def sort_rows(rows: list[dict], key: str, lower: bool) -> list[dict]:
    """Best first by key; runs without it (failed, running) after, in state then folder order."""
    def order(r):
        value = r["metrics"].get(key)
        scored = isinstance(value, (int, float)) and not math.isnan(value)
        return (0 if scored else 1, (value if lower else -value) if scored else 0, STATE_ORDER.get(r["state"], 9))

    return sorted(rows, key=order)


# --- table -------------------------------------------------------------------------------------------------------

def column_header(key: str) -> str:
    return key.removeprefix("forgetting/").replace("_", " ") if key.startswith("forgetting/") else key


def table_columns(rows: list[dict], metric: str, monitor: str | None,
                  patterns: list[str] = ()) -> list[tuple[str, str]]:
    """(metrics.json key, header) pairs shown for these rows: the metric, its best and test values, retention
    scores (or, with patterns, the metrics.json keys they match, in pattern order), resources."""
    wanted = [(metric, metric)]
    keys = sorted({k for r in rows for k in r["metrics"]})
    if patterns:
        wanted += [(k, column_header(k)) for pattern in patterns for k in keys if fnmatch.fnmatchcase(k, pattern)]
    else:
        if monitor:
            wanted.append((f"best_{monitor}", f"best {monitor}"))
        wanted.append((f"best_{metric}", f"best {metric}"))
        wanted.append((f"test/{base_name(metric)}", f"test/{base_name(metric)}"))
        # Retention (forgetting=...): each set's metric before and after training, beside the task's.
        wanted += [(k, column_header(k)) for k in keys if k.startswith("forgetting/")
                   and k.rsplit("_", 1)[-1] in ("before", "after", "change")]
    wanted += RESOURCE_COLUMNS
    seen, columns = set(), []
    for key, header in wanted:
        if key not in seen and any(key in r["metrics"] for r in rows):
            seen.add(key)
            columns.append((key, header))
    return columns


def spread_cell(row: dict, key: str) -> str:
    """A metric's cell: its value, or for a group of runs (--over) its mean ± sd, with n where runs lack it."""
    text = cell(row["metrics"].get(key), key)
    sd, n = row.get("spread", {}).get(key, (None, None))
    if sd is not None:
        text += f" ± {cell(float(sd), key)}"
    if n is not None and n < row["runs"]:
        text += f" (n={n})"
    return text


def cell(value, column: str = "") -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if column.endswith("_mb"):
        return f"{value:,.0f}"
    if column.endswith("seconds"):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"


def md_text(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("|", "\\|")


LABEL_CELL = 200  # characters of a run's label in the table


def lead_with_name(row: dict) -> str:
    """A label too long for its cell leads with the short one, so the cut cannot hide which run it is."""
    return row["label"] if len(row["label"]) <= LABEL_CELL or row["short_label"] == row["label"] else \
        f"{row['short_label']}: {row['label']}"


def markdown_report(rows: list[dict], columns: list[tuple[str, str]], common: dict[str, str], summary: str) -> str:
    lines = [summary, ""]
    if common:
        lines += ["Common: " + " ".join(f"{k}={v}" for k, v in common.items()), ""]
    with_error = any(r["error"] for r in rows)
    grouped = any("runs" in r for r in rows)
    header = ["run", *(["runs"] if grouped else []), "state", *(h for _, h in columns)] + (["error"] if with_error else [])
    lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for r in rows:
        cells = [md_text(lead_with_name(r), LABEL_CELL), *([str(r.get("runs", 1))] if grouped else []), r["state"],
                 *(spread_cell(r, k) for k, _ in columns)]
        lines.append("| " + " | ".join(cells + ([md_text(r["error"])] if with_error else [])) + " |")
    return "\n".join(lines)


def write_csv(rows: list[dict], columns: list[tuple[str, str]], varying: list[str], path: Path) -> None:
    """One row per run: label, state, each varying override as its own column, the metric columns, error, folder."""
    keys = [k for k, _ in columns]
    extra = [k for k in ("total_params", "optimizer_steps", "epochs") if any(k in r["metrics"] for r in rows)]
    grouped = any("runs" in r for r in rows)  # --over: each metric's sd and count beside its mean
    spread = [(k, i) for k in keys for i in (0, 1)] if grouped else []
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run", *(["runs"] if grouped else []), "state", *varying, *keys, *extra,
                         *(f"{k}_{'sd' if i == 0 else 'n'}" for k, i in spread), "error", "dir"])
        for r in rows:
            writer.writerow([r["label"], *([r["runs"]] if grouped else []), r["state"],
                             *(r["overrides"].get(k, "") for k in varying),
                             *(r["metrics"].get(k, "") for k in keys + extra),
                             *((r["spread"].get(k, (None, 0))[i] for k, i in spread)), r["error"], r["dir"]])


def report_folders(folders: list[Path], metric: str | None, mode: str | None, out: Path,
                   over: list[str] = (), column_patterns: list[str] = ()) -> list[Path]:
    """The table and plots for the runs below folders (runs differing only in `over` as one row of means);
    returns the files written."""
    runs = rows = collect(folders)
    if not rows:
        raise SystemExit(f"lft.report: no runs (metrics.json, failed.json or .hydra/) below "
                         f"{', '.join(map(str, folders))}; pass run or multirun folders")
    if over:
        from lft.reports.aggregate import aggregate

        label_rows(runs)  # the curves plot every run
        rows = aggregate(runs, list(over))
    monitor = most_common(r["monitor"] for r in rows)
    monitor_mode = most_common(r["mode"] for r in rows if r["monitor"] == monitor)
    metric = metric or monitor or "test/accuracy"
    lower = mode == "min" if mode else lower_is_better(metric, monitor, monitor_mode)
    best = f"best_{metric}"
    sort_key = best if any(best in r["metrics"] for r in rows) else metric
    varying, common = label_rows(rows)
    rows = sort_rows(rows, sort_key, lower)
    states = Counter(r["state"] for r in runs)
    summary = (f"Metric: {metric} ({'lower' if lower else 'higher'} is better), sorted by {sort_key}. "
               + (f"Runs differing only in {', '.join(over)} are one row: mean ± sample sd. " if over else "")
               + ", ".join(f"{n} {s}" for s, n in sorted(states.items(), key=lambda x: STATE_ORDER.get(x[0], 9))) + ".")
    columns = table_columns(rows, metric, monitor, column_patterns)
    unmatched = [p for p in column_patterns if not any(fnmatch.fnmatchcase(k, p) for r in rows for k in r["metrics"])]
    if unmatched:
        print(f"lft.report: --columns {' '.join(unmatched)} matched no metrics.json key of these runs.")
    table = markdown_report(rows, columns, common, summary)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "report.md", out / "report.csv"]
    written[0].write_text(table + "\n")
    write_csv(rows, columns, varying, written[1])
    print(table)

    from lft.reports.plots import plot_curves, plot_params  # matplotlib only when there is something to plot

    curve = plot_curves(runs if over else rows, metric, out / "report_curves.png")
    params = plot_params(rows, varying, sort_key, lower, out / "report_params.png")
    written += [p for p in (curve, params) if p]
    return written
