"""Compare runs: `python -m lft.report <sweep dir | run dir | results.json>... [--metric M] [--mode min|max]`.

Folders: every job folder below them (a Hydra multirun holds one per job) is a row: finished (metrics.json),
failed (failed.json, which a failing sweep job writes, see lft.train) or running (a .hydra folder but neither
file). Runs are labelled by the overrides that vary across the reported runs; the constant ones are printed
once, above the table. Columns: the metric (default: the runs' monitor.metric) as last logged and its best
validation value, test value, trainable parameters, fit seconds, peak memory, and the error of failed runs.
Rows sort best first (by the best validation value of the monitored metric, else the metric itself; monitor.mode
gives the direction, else names with loss/perplexity are lower-is-better), failed and running runs last.
Writes into the first folder (or --out): report.md, report.csv, report_curves.png (validation curves from
each run's csv/metrics.csv) and report_params.png (the metric against each varying override).

JSON files: the rows `lft.evaluate out=...` appended, printed as one table.
"""

import argparse
import csv
import json
import math
import os
import re
from collections import Counter
from pathlib import Path

import yaml

# Fractions shown as points (x100), as papers report ROUGE and BLEU.
POINTS = ("rouge1", "rouge2", "rougeL", "bleu", "accuracy", "f1", "preference_accuracy", "logp_accuracy")
FIRST = ("name", "rows", "rouge1", "rouge2", "rougeL", "bleu", "perplexity", "loss", "accuracy", "f1",
         "preference_accuracy", "logp_accuracy", "reward_margin", "seconds")
# Pairwise accuracies get a 95% Wilson interval over the row's `rows` pairs (shown in points, after the value).
INTERVALS = ("preference_accuracy", "logp_accuracy")


def wilson_interval(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion p observed on n trials."""
    if n <= 0:
        return math.nan, math.nan
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def read_rows(path) -> list[dict]:
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() and path.stat().st_size else []


def append_row(path, row: dict) -> list[dict]:
    rows = [r for r in read_rows(path) if r.get("name") != row.get("name")] + [row]  # re-running replaces a row
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(rows, indent=2))
    return rows


def format_table(rows: list[dict]) -> str:
    """A Markdown table over the metric columns the rows share."""
    columns = [c for c in FIRST if any(c in r for r in rows)]

    def cell(row, column):
        value = row.get(column, "")
        if column in INTERVALS and isinstance(value, float) and row.get("rows"):
            low, high = wilson_interval(value, int(row["rows"]))
            return f"{100 * value:.2f} [{100 * low:.1f}, {100 * high:.1f}]"
        if isinstance(value, float):
            return f"{100 * value:.2f}" if column in POINTS else f"{value:.3f}" if column != "seconds" else f"{value:.0f}"
        return str(value)

    header = [f"{c} (x100, 95% CI)" if c in INTERVALS else f"{c} (x100)" if c in POINTS else c for c in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r, c) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


FAILED_FILE = "failed.json"  # lft.train.FAILED_FILE (not imported: lft.train pulls in torch and Lightning)
LOWER_IS_BETTER = ("loss", "perplexity", "ppl", "error", "seconds", "_mb")
RESOURCE_COLUMNS = (("trainable_params", "trainable params"), ("fit_seconds", "fit s"),
                    ("peak_rss_mb", "peak RSS MB"), ("peak_gpu_mb", "peak GPU MB"))
STATE_ORDER = {"finished": 0, "running": 1, "stopped": 2, "failed": 3}


# --- finding and reading runs ------------------------------------------------------------------------------------

def is_run(folder: Path) -> bool:
    return (folder / "metrics.json").is_file() or (folder / FAILED_FILE).is_file() or (folder / ".hydra").is_dir()


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
    for path in (run / "config.yaml", run / ".hydra" / "config.yaml"):
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
    overrides_file = run / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
    metrics_file, failed_file = run / "metrics.json", run / FAILED_FILE
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
    names = [r["name"] for r in rows]
    if len(set(names)) == len(names) and not any(GENERATED_NAME.fullmatch(n) for n in names):
        for r in rows:  # folders the user named (hydra.run.dir=.../lora) say more in a plot than long overrides
            r["short_label"] = r["name"]
    for key in ("label", "short_label"):  # two runs with the same overrides: tell them apart by folder
        counts = Counter(r[key] for r in rows)
        for r in rows:
            if counts[r[key]] > 1 and r[key] != r["name"]:
                r[key] += f" [{r['name']}]"
    return varying, common


# --- metric, direction, order ------------------------------------------------------------------------------------

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

def table_columns(rows: list[dict], metric: str, monitor: str | None) -> list[tuple[str, str]]:
    """(metrics.json key, header) pairs shown for these rows: the metric, its best and test values, resources."""
    wanted = [(metric, metric)]
    if monitor:
        wanted.append((f"best_{monitor}", f"best {monitor}"))
    wanted.append((f"best_{metric}", f"best {metric}"))
    wanted.append((f"test/{base_name(metric)}", f"test/{base_name(metric)}"))
    # Retention (forgetting=...): each set's metric before and after training, beside the task's.
    retention = sorted({k for r in rows for k in r["metrics"] if k.startswith("forgetting/")
                        and k.rsplit("_", 1)[-1] in ("before", "after", "change")})
    wanted += [(k, k.removeprefix("forgetting/").replace("_", " ")) for k in retention]
    wanted += RESOURCE_COLUMNS
    seen, columns = set(), []
    for key, header in wanted:
        if key not in seen and any(key in r["metrics"] for r in rows):
            seen.add(key)
            columns.append((key, header))
    return columns


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


def markdown_report(rows: list[dict], columns: list[tuple[str, str]], common: dict[str, str], summary: str) -> str:
    lines = [summary, ""]
    if common:
        lines += ["Common: " + " ".join(f"{k}={v}" for k, v in common.items()), ""]
    with_error = any(r["error"] for r in rows)
    header = ["run", "state", *(h for _, h in columns)] + (["error"] if with_error else [])
    lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for r in rows:
        cells = [md_text(r["label"], 200), r["state"], *(cell(r["metrics"].get(k), k) for k, _ in columns)]
        lines.append("| " + " | ".join(cells + ([md_text(r["error"])] if with_error else [])) + " |")
    return "\n".join(lines)


def write_csv(rows: list[dict], columns: list[tuple[str, str]], varying: list[str], path: Path) -> None:
    """One row per run: label, state, each varying override as its own column, the metric columns, error, folder."""
    keys = [k for k, _ in columns]
    extra = [k for k in ("total_params", "optimizer_steps", "epochs") if any(k in r["metrics"] for r in rows)]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run", "state", *varying, *keys, *extra, "error", "dir"])
        for r in rows:
            writer.writerow([r["label"], r["state"], *(r["overrides"].get(k, "") for k in varying),
                             *(r["metrics"].get(k, "") for k in keys + extra), r["error"], r["dir"]])


def report_folders(folders: list[Path], metric: str | None, mode: str | None, out: Path) -> list[Path]:
    """The table and plots for the runs below folders; returns the files written."""
    rows = collect(folders)
    if not rows:
        raise SystemExit(f"lft.report: no runs (metrics.json, failed.json or .hydra/) below "
                         f"{', '.join(map(str, folders))}; pass run or multirun folders")
    monitor = most_common(r["monitor"] for r in rows)
    monitor_mode = most_common(r["mode"] for r in rows if r["monitor"] == monitor)
    metric = metric or monitor or "test/accuracy"
    lower = mode == "min" if mode else lower_is_better(metric, monitor, monitor_mode)
    best = f"best_{metric}"
    sort_key = best if any(best in r["metrics"] for r in rows) else metric
    varying, common = label_rows(rows)
    rows = sort_rows(rows, sort_key, lower)
    states = Counter(r["state"] for r in rows)
    summary = (f"Metric: {metric} ({'lower' if lower else 'higher'} is better), sorted by {sort_key}. "
               + ", ".join(f"{n} {s}" for s, n in sorted(states.items(), key=lambda x: STATE_ORDER.get(x[0], 9))) + ".")
    columns = table_columns(rows, metric, monitor)
    table = markdown_report(rows, columns, common, summary)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "report.md", out / "report.csv"]
    written[0].write_text(table + "\n")
    write_csv(rows, columns, varying, written[1])
    print(table)

    from lft.report_plots import plot_curves, plot_params  # matplotlib only when there is something to plot

    curve = plot_curves(rows, metric, out / "report_curves.png")
    params = plot_params(rows, varying, sort_key, lower, out / "report_params.png")
    written += [p for p in (curve, params) if p]
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, help="sweep or run folders, or lft.evaluate result files")
    parser.add_argument("--metric", help="metric to compare and sort by (default: the runs' monitor.metric)")
    parser.add_argument("--mode", choices=("min", "max"), help="is lower (min) or higher (max) better (default: "
                        "monitor.mode for the monitored metric, else min for loss/perplexity-like names)")
    parser.add_argument("--out", type=Path, help="folder for report.md/.csv/.png (default: the first folder)")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        parser.error(f"no such file or folder: {', '.join(missing)}")
    results = [row for p in args.paths if p.is_file() for row in read_rows(p)]
    if results:
        print(format_table(results))
    folders = [p for p in args.paths if p.is_dir()]
    if not folders:
        return
    written = report_folders(folders, args.metric, args.mode, args.out or folders[0])
    print("\nWrote " + ", ".join(os.fspath(p) for p in written))


if __name__ == "__main__":
    main()
