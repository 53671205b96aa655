"""Saved generations scored again, no model loaded: `lft.evaluate predictions=<evaluation folder>`.

An evaluation writes each generated row to predictions.jsonl with its references and the columns they came
from. Scoring that file against some of the columns (`data.reference_columns=[summary1]`, the single-reference
way many papers score DialogSum) or by other metrics (`data.generate.metrics`) gives the numbers a second
generation pass would, in seconds instead of the minutes generation takes.
"""

import json
import time
from pathlib import Path

from omegaconf import DictConfig

from lft.config.errors import ConfigError
from lft.evaluation.metrics import collection, generation_metrics, update_generation


def read_predictions(path) -> tuple[list[dict], dict]:
    """(the predictions.jsonl rows, the evaluation.json row beside them or {}); path: the file or its folder."""
    path = Path(path)
    file = path / "predictions.jsonl" if path.is_dir() else path
    if not file.is_file():
        raise ConfigError(f"predictions={path}: no predictions.jsonl there; give the output folder of an "
                          "lft.evaluate run that generated text (or the file itself).")
    samples = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
    if not samples or "prediction" not in samples[0] or "references" not in samples[0]:
        raise ConfigError(f"predictions={file} holds no generated rows with references (an online-RL evaluation "
                          "scores rewards, not references); give a text-to-text evaluation's folder.")
    beside = file.parent / "evaluation.json"
    return samples, json.loads(beside.read_text()) if beside.is_file() else {}


def chosen_references(samples: list[dict], columns: list[str] | None) -> list[list[str]]:
    """Each row's references from `columns` (all it has when None), refused where a row has none of them."""
    if not columns:
        return [s["references"] for s in samples]
    if "reference_columns" not in samples[0]:
        raise ConfigError("these predictions do not name their reference columns (a chat evaluation, or one from "
                          "before lft recorded them); score them against all their references: data.reference_columns=null.")
    chosen = []
    for s in samples:
        refs = [text for name, text in zip(s["reference_columns"], s["references"], strict=True) if name in columns]
        if not refs:
            raise ConfigError(f"row {s['row']} has none of data.reference_columns={list(columns)} (it has "
                              f"{s['reference_columns']}); name columns the evaluation scored against.")
        chosen.append(refs)
    return chosen


def rescore(cfg: DictConfig) -> dict:
    """The result row of scoring saved predictions again (`references`: the columns chosen, or all)."""
    start = time.perf_counter()
    samples, scored = read_predictions(cfg.predictions)
    columns = list(cfg.data.get("reference_columns") or []) or None
    metrics = collection(generation_metrics((cfg.data.get("generate") or {}).get("metrics") or ["rouge", "bleu"]))
    update_generation(metrics, [s["prediction"] for s in samples], chosen_references(samples, columns))
    values = {key: float(value) for key, value in metrics.compute().items()}
    return {"name": cfg.get("name") or f"{scored.get('name', Path(str(cfg.predictions)).name)} (rescored)",
            "model": scored.get("model"), "weights": scored.get("weights"), "predictions": str(cfg.predictions),
            "rows": len(samples), "references": columns or "all", **values,
            "seconds": round(time.perf_counter() - start, 1)}
