"""The plots of `python -m lft.report` (matplotlib, Agg: files only): validation curves of every run on one axis
per metric, the compared metric against each override that varies across the runs, and bars of the scores in
an `lft.evaluate out=` results file.

Figures grow with the number of runs and overrides; legends sit below the axes, labels use short keys.
"""

import csv
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

FAILED_COLOR = "tab:red"
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")


def logged_metrics(run: Path) -> list[dict[str, str]]:
    """The rows of the CSV logger's metrics.csv (<run>/csv/metrics.csv, or any metrics.csv a level or two down)."""
    candidates = [run / "csv" / "metrics.csv", *sorted(run.glob("*/metrics.csv")), *sorted(run.glob("*/*/metrics.csv"))]
    path = next((p for p in candidates if p.is_file()), None)
    if not path:
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def curve(rows: list[dict[str, str]], metric: str) -> tuple[list[float], list[float]]:
    """(steps, values) of one logged metric; a step logged twice keeps its last value."""
    points = {}
    for row in rows:
        value, step = row.get(metric) or "", row.get("step") or ""
        if value and step:
            try:
                points[float(step)] = float(value)
            except ValueError:
                continue
    steps = sorted(points)
    return steps, [points[s] for s in steps]


def colors(n: int) -> list:
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20" if n <= 20 else "viridis")
    return [cmap(i if n <= 20 else i / max(1, n - 1)) for i in range(n)]


def legend_columns(labels: list[str], width_inches: float) -> int:
    longest = max((len(label) for label in labels), default=10)
    return max(1, min(len(labels), int(width_inches * 12 / max(longest + 4, 8))))  # ~12 legend characters an inch


def plot_curves(rows: list[dict], metric: str, out: Path) -> Path | None:
    """Validation curves of all runs, one axis per metric (the compared one, and val/loss beside it)."""
    base = metric.removeprefix("best_").split("/", 1)[-1]
    metrics = list(dict.fromkeys([f"val/{base}", "val/loss"]))
    logged = {r["dir"]: logged_metrics(Path(r["dir"])) for r in rows}
    metrics = [m for m in metrics if any(curve(logged[r["dir"]], m)[0] for r in rows)]
    if not metrics:
        return None
    shown = [r for r in rows if any(curve(logged[r["dir"]], m)[0] for m in metrics)]
    labels = [r["short_label"] + ("" if r["state"] == "finished" else f" ({r['state']})") for r in shown]
    width = max(6.0, 4.5 * len(metrics))
    ncol = legend_columns(labels, width)
    legend_rows = math.ceil(len(labels) / ncol)
    fig, axes = plt.subplots(1, len(metrics), figsize=(width, 3.6 + 0.28 * legend_rows), layout="constrained",
                             squeeze=False)
    handles = []
    for ax, name in zip(axes[0], metrics, strict=False):
        for i, (r, color) in enumerate(zip(shown, colors(len(shown)), strict=True)):
            steps, values = curve(logged[r["dir"]], name)
            if not steps:
                continue
            finished = r["state"] == "finished"
            # Runs with equal values overlap: a marker each, later ones smaller, so every run stays visible.
            (line,) = ax.plot(steps, values, marker=MARKERS[i % len(MARKERS)], markersize=max(3.0, 7 - 0.4 * i),
                              linewidth=max(1.0, 2.2 - 0.1 * i), color=color,
                              linestyle="-" if finished else "--", alpha=1.0 if finished else 0.7)
            if ax is axes[0][0]:
                handles.append(line)
        ax.set_title(name)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    fig.legend(handles, labels, loc="outside lower center", ncol=ncol, fontsize=9, frameon=False)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def clip(text: str, width: int = 20) -> str:
    """A tick label at most width characters: a path keeps its end, anything else its start."""
    if len(text) <= width:
        return text
    if "/" in text.rstrip("/"):
        text = ".../" + text.rstrip("/").rsplit("/", 1)[-1]
    return text if len(text) <= width else text[: width - 1] + "…"


def as_numbers(values: list[str]) -> list[float] | None:
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        return None
    return numbers if all(math.isfinite(n) for n in numbers) else None


def plot_params(rows: list[dict], varying: list[str], key: str, lower: bool, out: Path) -> Path | None:
    """key (a metrics.json value) against each varying override: one small axis per override; runs without the
    value (failed, running) as red crosses along the bottom. An override set to one value wherever it is given
    (a member's path in the mixture runs only) varies only by its absence: no axis for it."""
    varying = [k for k in varying if len({r["overrides"][k] for r in rows if k in r["overrides"]}) > 1]
    if not varying:
        return None
    from lft.reports.labels import short_keys, short_value

    short = short_keys(varying)
    ncols = min(3, len(varying))
    nrows = math.ceil(len(varying) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows + 0.4), layout="constrained",
                             squeeze=False)
    scored = [r for r in rows if isinstance(r["metrics"].get(key), (int, float))]
    unscored = [r for r in rows if r not in scored]
    for ax, name in zip(axes.flat, varying, strict=False):
        values = [r["overrides"].get(name) for r in rows]
        present = [v for v in values if v is not None]
        numbers = as_numbers(present)
        if numbers is not None:
            position = {v: float(v) for v in present}
            positive = [n for n in numbers if n > 0]
            low, high = min(numbers), max(numbers)
            if len(positive) == len(numbers) and high / low > 10:
                ax.set_xscale("log")
                pad = 10 ** (0.06 * math.log10(high / low))
                ax.set_xlim(low / pad, high * pad)  # failed runs' values too (they have no point to autoscale on)
            else:
                pad = 0.06 * (high - low) or 0.1 * abs(high) or 1.0
                ax.set_xlim(low - pad, high + pad)
        else:
            categories = list(dict.fromkeys(present))
            position = {v: float(i) for i, v in enumerate(categories)}
            labels = [clip(short_value(c)) for c in categories]
            crowded = sum(len(label) + 3 for label in labels) > 40  # ~10 tick characters an inch, 4 inches
            ax.set_xticks(range(len(categories)), labels, rotation=30 if crowded else 0,
                          ha="right" if crowded else "center")
            ax.set_xlim(-0.5, len(categories) - 0.5)
        xs = [position[r["overrides"][name]] for r in scored if name in r["overrides"]]
        ys = [r["metrics"][key] for r in scored if name in r["overrides"]]
        ax.scatter(xs, ys, s=36, color="tab:blue", zorder=3, label="finished run")
        failed = [position[r["overrides"][name]] for r in unscored if name in r["overrides"]]
        if failed:  # x in data units, y in axes units: along the bottom edge, below every finished run
            if ys:
                low, high = ax.get_ylim()
                ax.set_ylim(low - 0.15 * (high - low), high)
            ax.scatter(failed, [0.04] * len(failed), marker="x", s=50, color=FAILED_COLOR, zorder=4,
                       transform=ax.get_xaxis_transform(), label="failed / no value")
        ax.set_xlabel(short[name])
        ax.set_title(name, fontsize=9)
        ax.set_ylabel(key, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(varying):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(h)
                labels.append(label)
    fig.suptitle(f"{key} ({'lower' if lower else 'higher'} is better) by override", fontsize=10)
    if unscored:
        fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=9, frameon=False)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_results(rows: list[dict], out: Path) -> Path | None:
    """Bars of the scores shown in points (ROUGE, BLEU, accuracy, ...) that every row has: a group per metric, a
    bar per row, its value on top. None where the rows share no such score."""
    from lft.reports.results import POINTS

    metrics = [m for m in POINTS if all(isinstance(r.get(m), (int, float)) for r in rows)]
    if not metrics:
        return None
    labels = [str(r.get("name")) + (f" ({r['task']})" if r.get("task") else "") for r in rows]
    width = 1.0 / (len(rows) + 1)
    fig_width = max(6.0, 0.45 * len(metrics) * (len(rows) + 1))
    ncol = legend_columns(labels, fig_width)
    fig, ax = plt.subplots(figsize=(fig_width, 4.0 + 0.28 * math.ceil(len(labels) / ncol)), layout="constrained")
    for i, (row, label, color) in enumerate(zip(rows, labels, colors(len(rows)), strict=True)):
        xs = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(metrics))]
        bars = ax.bar(xs, [100 * row[m] for m in metrics], width, label=label, color=color)
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
    ax.set_xticks(range(len(metrics)), metrics)
    ax.set_ylabel("score (x100)")
    ax.grid(axis="y", alpha=0.3)
    fig.legend(loc="outside lower center", ncol=ncol, fontsize=9, frameon=False)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
