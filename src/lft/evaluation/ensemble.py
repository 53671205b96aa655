"""Ensembles of finished runs, scored by `python -m lft.evaluate runs=[<run a>,<run b>,...]`.

Every member is evaluated as a single run is (its own row), then the ensemble on the same test rows:
  classification   the members' softmax class probabilities averaged per row (average_probabilities),
                   argmax, scored by the task's own MetricCollection (accuracy, F1); loss = NLL of the average
  seq2seq,         per row the member generation with the highest mean ROUGE-L F to the other members'
  causal_lm        generations (minimum-Bayes-risk selection, mbr_select), scored by the task's generation
                   metrics. With two members the two scores tie and the first member's text is kept.
Members must share the task type, the label set and the base model family; check_members refuses a mismatch
from the runs' config.yaml and saved model config, before any weights load.
"""

import json

import torch
from rouge_score import rouge_scorer

from lft.config.errors import ConfigError
from lft.runs.folder import load_run_config
from lft.runs.layout import weights_folder

SUPPORTED = ("classification", "seq2seq", "causal_lm")


def average_probabilities(logits: list[torch.Tensor]) -> torch.Tensor:
    """rows x classes: the mean over members of softmax(logits), each member's tensor rows x classes."""
    if not logits:
        raise ValueError("average_probabilities needs at least one member's logits")
    return torch.stack([x.float().softmax(-1) for x in logits]).mean(0)


_ROUGE_L = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def mbr_select(candidates: list[str]) -> int:
    """Index of the candidate with the highest mean ROUGE-L F to the other candidates (first on ties)."""
    if len(candidates) < 2:
        return 0

    def agreement(i: int) -> float:
        others = [c for j, c in enumerate(candidates) if j != i]
        return sum(_ROUGE_L.score(o, candidates[i])["rougeL"].fmeasure for o in others) / len(others)

    scores = [agreement(i) for i in range(len(candidates))]
    return scores.index(max(scores))


def saved_model_config(run) -> dict:
    """The config.json saved with a run's weights (model/ or the base config beside adapter/), {} if none."""
    folder = weights_folder(run)
    path = folder and folder / "config.json"
    return json.loads(path.read_text()) if path and path.is_file() else {}


def member_labels(run) -> list[str] | None:
    id2label = saved_model_config(run).get("id2label")
    if id2label:
        return [str(id2label[k]) for k in sorted(id2label, key=int)]
    names = load_run_config(run).data.get("label_names")
    return [str(n) for n in names] if names else None


def check_members(runs: list) -> dict:
    """Refuse ensembles whose members disagree; returns {"task", "labels"} they share. Reads no weights."""
    runs = [str(r) for r in runs]
    if len(runs) < 2:
        raise ConfigError(f"runs={runs}: an ensemble needs at least two run folders, e.g. runs=[<run a>,<run b>].")
    if len(set(runs)) < len(runs):
        raise ConfigError(f"runs={runs}: a run is listed twice; list each member once.")
    configs = {r: load_run_config(r) for r in runs}
    tasks = {r: str(c.data.get("task")) for r, c in configs.items()}
    _same("task type (data.task)", tasks)
    task = tasks[runs[0]]
    if task not in SUPPORTED:
        raise ConfigError(f"runs=...: ensembles of data.task={task} runs are not supported; lft ensembles "
                          "classification (averaged class probabilities) and seq2seq/causal_lm (MBR selection).")
    families = {r: saved_model_config(r).get("model_type") or str(c.model.name_or_path) for r, c in configs.items()}
    _same("base model family (model_type)", families)
    labels = None
    if task == "classification":
        member = {r: member_labels(r) for r in runs}
        _same("label set", {r: str(v) for r, v in member.items()})
        labels = member[runs[0]]
    return {"task": task, "labels": labels}


def _same(what: str, values: dict) -> None:
    if len(set(values.values())) > 1:
        listed = "; ".join(f"{run}: {value}" for run, value in values.items())
        raise ConfigError(f"runs=...: ensemble members must share one {what}, but they differ ({listed}); "
                          "ensemble runs trained on the same task and labels from one model family.")


def classification_result(task, encoded, logits: list[torch.Tensor], labels: list[torch.Tensor]) -> dict:
    """Ensemble metrics from each member's test logits (rows x classes) and labels (rows), rows in one order."""
    if any(len(y) != len(labels[0]) or not torch.equal(y, labels[0]) for y in labels[1:]):
        raise ConfigError("runs=...: the members saw different test rows (their labels differ row by row); "
                          "score them with the same data settings and seed.")
    probs = average_probabilities(logits)
    metrics = task.metrics(encoded)
    metrics.update(probs.argmax(-1), labels[0])
    out = {k: float(v) for k, v in metrics.compute().items()}
    out["loss"] = float(torch.nn.functional.nll_loss(probs.clamp_min(1e-12).log(), labels[0]))
    return out


def generation_result(task, encoded, samples: list[list[dict]]) -> tuple[dict, list[dict]]:
    """Ensemble metrics and predictions from each member's generated test rows (MBR selection per row)."""
    from lft.evaluation.metrics import update_generation

    rows = [{s["row"]: s for s in member} for member in samples]
    common = sorted(set(rows[0]).intersection(*rows[1:]))
    if not common:
        raise ConfigError("runs=...: the members generated for no common test row; set data.generate.test_samples "
                          "above 0 (the same for every member).")
    chosen = []
    for row in common:
        texts = [member[row]["prediction"] for member in rows]
        pick = mbr_select(texts)
        chosen.append({**rows[pick][row], "member": pick})
    metrics = task.metrics(encoded)
    generated = {k: m for k, m in metrics.items() if k != "perplexity"}
    update_generation(metrics, [c["prediction"] for c in chosen],
                      [c.get("references") or [c["reference"]] for c in chosen])
    return {k: float(m.compute()) for k, m in generated.items()}, chosen
