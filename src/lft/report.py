"""Compare runs: `python -m lft.report <run dir | sweep dir | results.json>... [--metric test/accuracy]`.

Folders: every metrics.json below them (a Hydra multirun folder holds one per job), each run labelled by its
command-line overrides. JSON files: the rows `lft.evaluate out=...` appended. Prints a Markdown table and,
for folders, writes report.md and report.png (a bar plot of --metric) into the first folder.
"""

import argparse
import json
import math
from pathlib import Path

import yaml

COLUMNS = ("test/accuracy", "test/f1", "test/preference_accuracy", "test/logp_accuracy", "test/reward_margin",
           "test/rouge1", "test/rouge2", "test/rougeL", "test/bleu", "test/perplexity", "test/loss",
           "best_val/accuracy", "trainable_params", "fit_seconds")

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


def collect(folders: list[Path]) -> list[dict]:
    rows = []
    for folder in folders:
        for path in sorted(folder.rglob("metrics.json")):
            run = path.parent
            overrides_file = run / ".hydra" / "overrides.yaml"
            overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.exists() else []
            label = " ".join(o for o in overrides if not o.startswith("hydra.")) or run.name
            rows.append({"run": label, "dir": str(run), **json.loads(path.read_text())})
    return rows


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    def fmt(v):
        return f"{v:.4f}" if isinstance(v, float) else ("" if v is None else f"{v:,}" if isinstance(v, int) else str(v))

    lines = ["| run | " + " | ".join(columns) + " |", "| --- |" + " --- |" * len(columns)]
    lines += ["| " + r["run"] + " | " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def bar_plot(rows: list[dict], metric: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    scored = [r for r in rows if metric in r]
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(scored)), 3.5))
    ax.bar(range(len(scored)), [r[metric] for r in scored])
    ax.set_xticks(range(len(scored)), [r["run"] for r in scored], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by run")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, help="run or multirun folders, or lft.evaluate result files")
    parser.add_argument("--metric", default="test/accuracy", help="metric to sort folders' runs by and plot")
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
    rows = collect(folders)
    if not rows:
        parser.error("no metrics.json found below the given folders; pass run or multirun folders")
    rows.sort(key=lambda r: r.get(args.metric, float("-inf")), reverse=True)
    columns = [c for c in dict.fromkeys([args.metric, *COLUMNS]) if any(c in r for r in rows)]
    table = markdown_table(rows, columns)
    (folders[0] / "report.md").write_text(table + "\n")
    bar_plot(rows, args.metric, folders[0] / "report.png")
    print(table)
    print(f"\nWrote {folders[0] / 'report.md'} and {folders[0] / 'report.png'}")


if __name__ == "__main__":
    main()
