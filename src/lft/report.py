"""Compare runs: `python -m lft.report <sweep dir | run dir | results.json>... [--metric M] [--mode min|max]`.

Folders: every job folder below them (a Hydra multirun holds one per job) is a row: finished (metrics.json),
failed (failed.json, which a failing sweep job writes, see lft.train) or running (a .hydra folder but neither
file). Runs are labelled by the overrides that vary across the reported runs; the constant ones are printed
once, above the table. Columns: the metric (default: the runs' monitor.metric) as last logged and its best
validation value, test value, trainable parameters, fit seconds, peak memory, and the error of failed runs.
Rows sort best first (by the best validation value of the monitored metric, else the metric itself; monitor.mode
gives the direction, else names with loss/perplexity are lower-is-better), failed and running runs last.
Writes into the first folder (or --out): report.md, report.csv, report_curves.png (validation curves from
each run's csv/metrics.csv) and report_params.png (the metric against each varying override). `--over seed`
makes the runs that differ only in their seed one row: each metric's mean ± sample standard deviation.
`--columns PATTERN...` picks the metrics.json keys shown (shell patterns, e.g. 'forgetting/*/perplexity_*').

JSON files: the rows `lft.evaluate out=...` appended, printed as one table, and their scores as bars in
<first file's name>.png beside it (or in --out).
"""

import argparse
import os
from pathlib import Path

from lft.reports.plots import plot_results
from lft.reports.results import format_table, read_rows
from lft.reports.table import report_folders


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, help="sweep or run folders, or lft.evaluate result files")
    parser.add_argument("--metric", help="metric to compare and sort by (default: the runs' monitor.metric)")
    parser.add_argument("--mode", choices=("min", "max"), help="is lower (min) or higher (max) better (default: "
                        "monitor.mode for the monitored metric, else min for loss/perplexity-like names)")
    parser.add_argument("--over", action="append", default=[], metavar="KEY",
                        help="runs that differ only in this override (e.g. seed; repeatable) are one row: each "
                        "metric's mean ± sample standard deviation, and how many runs it has")
    parser.add_argument("--columns", nargs="+", default=[], metavar="PATTERN",
                        help="the metrics.json keys to show beside the metric and resources, as shell patterns "
                        "(e.g. 'forgetting/*/perplexity_*'); default: best and test values and every retention score")
    parser.add_argument("--out", type=Path, help="folder for report.md/.csv/.png (default: the first folder)")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        parser.error(f"no such file or folder: {', '.join(missing)}")
    files = [p for p in args.paths if p.is_file()]
    results = [row for p in files for row in read_rows(p)]
    if results:
        print(format_table(results))
        (args.out or files[0].parent).mkdir(parents=True, exist_ok=True)
        bars = plot_results(results, (args.out or files[0].parent) / f"{files[0].stem}.png")
        if bars:
            print(f"\nWrote {os.fspath(bars)}")
    folders = [p for p in args.paths if p.is_dir()]
    if not folders:
        return
    written = report_folders(folders, args.metric, args.mode, args.out or folders[0], args.over, args.columns)
    print("\nWrote " + ", ".join(os.fspath(p) for p in written))


if __name__ == "__main__":
    main()
