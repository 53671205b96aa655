"""The results file `lft.evaluate out=...` appends rows to, and its table (with Wilson intervals)."""

import json
import math
from pathlib import Path

# Fractions shown as points (x100), as papers report ROUGE and BLEU.
POINTS = ("rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "accuracy", "f1", "preference_accuracy", "logp_accuracy",
          "acc", "acc_norm", "exact_match")


# task, acc, acc_norm, exact_match: rows of lm-evaluation-harness tasks (lft/evaluation/harness.py); reward, kl,
# response_length: a policy scored on prompts (online RL's tasks/rl.py).
FIRST = ("name", "task", "rows", "references", "rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "perplexity", "loss", "accuracy", "f1",
         "preference_accuracy", "logp_accuracy", "reward_margin", "reward", "kl", "response_length", "acc", "acc_norm",
         "exact_match", "seconds", "precision", "peak_rss_mb", "peak_gpu_mb")
# Shown as whole numbers.
WHOLE = ("seconds", "peak_rss_mb", "peak_gpu_mb")


# Pairwise accuracies get a 95% Wilson interval over the row's `rows` pairs (shown in points, after the value);
# a mean with a `<name>_ci95` half-width beside it (reward) shows its normal 95% interval the same way.
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
    # Re-running replaces a row: the same name (and harness task; lft's own rows have none).
    rows = [r for r in read_rows(path) if (r.get("name"), r.get("task")) != (row.get("name"), row.get("task"))] + [row]
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
        if isinstance(value, float) and isinstance(row.get(f"{column}_ci95"), float):
            half = row[f"{column}_ci95"]
            return f"{value:.3f} [{value - half:.3f}, {value + half:.3f}]"
        if column in POINTS and isinstance(value, float) and isinstance(row.get(f"{column}_stderr"), float):  # lm_eval's standard error
            return f"{100 * value:.2f} ± {100 * row[f'{column}_stderr']:.1f}"
        if isinstance(value, list):  # references: the columns a rescored row was scored against
            return ", ".join(map(str, value))
        if isinstance(value, float):
            return f"{100 * value:.2f}" if column in POINTS else f"{value:.0f}" if column in WHOLE else f"{value:.3f}"
        return str(value)

    def title(column):
        if column in INTERVALS:
            return f"{column} (x100, 95% CI)"
        if any(f"{column}_ci95" in r for r in rows):
            return f"{column} (95% CI)"
        return f"{column} (x100)" if column in POINTS else column

    header = [title(c) for c in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r, c) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
