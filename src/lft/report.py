"""Result tables: `python -m lft.report results.json [more.json ...]` prints the rows lft.evaluate appended."""

import json
import sys
from pathlib import Path

# Fractions shown as points (x100), as papers report ROUGE and BLEU.
POINTS = ("rouge1", "rouge2", "rougeL", "bleu", "accuracy", "f1")
FIRST = ("name", "rows", "rouge1", "rouge2", "rougeL", "bleu", "perplexity", "loss", "accuracy", "f1", "seconds")


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
        if isinstance(value, float):
            return f"{100 * value:.2f}" if column in POINTS else f"{value:.3f}" if column != "seconds" else f"{value:.0f}"
        return str(value)

    header = [f"{c} (x100)" if c in POINTS else c for c in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r, c) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def main(argv=None) -> None:
    rows = [row for path in (argv if argv is not None else sys.argv[1:]) for row in read_rows(path)]
    print(format_table(rows))


if __name__ == "__main__":
    main()
