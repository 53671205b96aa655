"""Ensembles in lft.evaluate: `runs=[<run a>,<run b>,...]` scores each run and their ensemble on the same test rows.

Classification runs only: the ensemble's prediction for a row is the class with the highest mean of the members'
softmax probabilities (soft voting), scored with the task's own metrics. Members and ensemble are scored by the
same loop, so their rows are comparable. Members must share the base model (one tokenization of the test split),
the data's task and its labels; runs of any strategy (full, LoRA, frozen layers) mix.
"""

import time
from pathlib import Path

import torch

from lft.errors import ConfigError
from lft.run_folder import load_run_config, load_trained_model


def average_probabilities(logits: list[torch.Tensor]) -> torch.Tensor:
    """Rows x classes: the mean over members of each member's softmax probabilities."""
    return torch.stack([member.float().softmax(-1) for member in logits]).mean(0)


def check_members(runs: list) -> list:
    """The members' saved configs; one message for anything that keeps them from being one ensemble."""
    if len(runs) < 2:
        raise ConfigError(f"runs={list(runs)}: an ensemble needs at least two run folders.")
    configs = [load_run_config(run) for run in runs]

    def differing(what: str, value) -> None:
        values = {str(run): value(cfg) for run, cfg in zip(runs, configs, strict=True)}
        if len(set(map(str, values.values()))) > 1:
            listed = "; ".join(f"{run}: {v}" for run, v in values.items())
            raise ConfigError(f"runs=[...] must share {what} to form one ensemble, but they differ ({listed}).")

    differing("the data's task", lambda c: c.data.get("task"))
    if configs[0].data.get("task") != "classification":
        raise ConfigError(f"runs=[...]: ensembles average class probabilities, so they take classification runs; "
                          f"these are data.task={configs[0].data.get('task')!r}. Score such runs one at a time "
                          "(run=<folder>).")
    differing("the base model (one tokenization of the test rows)", lambda c: c.model.name_or_path)
    differing("the label names", lambda c: list(c.data.get("label_names") or []))
    return configs


@torch.no_grad()
def test_logits(model, datamodule) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) of every test row, in the test loader's order (the same for every member)."""
    device = next(model.parameters()).device
    logits, labels = [], []
    for batch in datamodule.test_dataloader():
        batch = {k: v.to(device) for k, v in batch.items()}
        logits.append(model(**batch).logits.float().cpu())
        labels.append(batch["labels"].cpu())
    return torch.cat(logits), torch.cat(labels)


def score(task, predictions: torch.Tensor, labels: torch.Tensor) -> dict:
    metrics = task.metrics()
    metrics.update(predictions, labels)
    return {name: float(value) for name, value in metrics.compute().items()}


def evaluate_ensemble(cfg, task, datamodule) -> list[dict]:
    """One row per member and a last `ensemble` row: test accuracy and F1 on the same rows."""
    rows, member_logits, labels = [], [], None
    for run in cfg.runs:
        start = time.perf_counter()
        model = load_trained_model(task, load_run_config(run).model, run).eval()
        check_labels(model, task, run)
        logits, labels = test_logits(model, datamodule)
        del model
        member_logits.append(logits)
        rows.append({"name": Path(run).name, "model": str(cfg.model.name_or_path), "weights": str(run),
                     "rows": len(labels), **score(task, logits.argmax(-1), labels),
                     "seconds": round(time.perf_counter() - start, 1)})
    probabilities = average_probabilities(member_logits)
    rows.append({"name": cfg.get("name") or "ensemble", "model": str(cfg.model.name_or_path),
                 "weights": ",".join(map(str, cfg.runs)), "rows": len(labels),
                 **score(task, probabilities.argmax(-1), labels), "members": [r["name"] for r in rows]})
    return rows


def check_labels(model, task, run) -> None:
    """A run trained on other labels (its saved head says which) cannot vote on these rows."""
    names = [model.config.id2label[i] for i in sorted(model.config.id2label)] if model.config.id2label else []
    if names and names != task.label_names:
        raise ConfigError(f"runs=[...]: {run} was trained on labels {names}, but the test data has "
                          f"{task.label_names}; ensemble runs of the same labels.")
