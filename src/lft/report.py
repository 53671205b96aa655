"""`python -m lft.report <run or sweep dir>... [--metric test/accuracy]`: compare runs in a table and a plot.

Finds every metrics.json below the given folders (a Hydra multirun folder holds one per job), labels
each run by its command-line overrides, and writes report.md and report.png into the first folder.
"""

import argparse
import json
from pathlib import Path

import yaml

COLUMNS = ("test/accuracy", "test/f1", "test/rouge1", "test/loss", "best_val/accuracy", "trainable_params", "fit_seconds")


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
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--metric", default="test/accuracy", help="metric to sort by and plot")
    args = parser.parse_args(argv)
    missing = [str(f) for f in args.folders if not f.exists()]
    if missing:
        parser.error(f"no such folder: {', '.join(missing)}")
    rows = collect(args.folders)
    if not rows:
        parser.error("no metrics.json found below the given folders; pass run or multirun folders")
    rows.sort(key=lambda r: r.get(args.metric, float("-inf")), reverse=True)
    columns = [c for c in dict.fromkeys([args.metric, *COLUMNS]) if any(c in r for r in rows)]
    table = markdown_table(rows, columns)
    out = args.folders[0] if args.folders[0].is_dir() else Path(".")
    (out / "report.md").write_text(table + "\n")
    bar_plot(rows, args.metric, out / "report.png")
    print(table)
    print(f"\nWrote {out / 'report.md'} and {out / 'report.png'}")


if __name__ == "__main__":
    main()
