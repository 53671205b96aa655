"""Scoring on a test split: a base model, a run (adapter or full weights), or an ensemble of runs.

lft.evaluate is its command line; rows append to one results file (lft/reports/results.py)."""

import copy
import json
import logging
import time
from pathlib import Path

import lightning as L
from omegaconf import DictConfig, OmegaConf, open_dict

from lft.callbacks.logits_collector import TestLogits
from lft.callbacks.plain_progress import PlainProgress
from lft.config.errors import ConfigError
from lft.config.rl import ONLINE_TASKS
from lft.config.validate import validate
from lft.evaluation.ensemble import check_members, classification_result, generation_result
from lft.evaluation.harness import evaluate_harness, wants_harness
from lft.models.loading import load_tokenizer
from lft.recipes.rescore import rescore
from lft.reports.results import append_row, format_table
from lft.runs.folder import load_run_config, load_trained_model
from lft.runs.memory import peak_memory_mb, reset_peak_memory
from lft.tasks import build_task
from lft.training.finetune_module import FineTuneModule
from lft.training.loggers import build_loggers

log = logging.getLogger("lft")


def evaluate(cfg: DictConfig) -> dict:
    validate(cfg, "evaluate")
    if cfg.get("predictions"):
        check_rescoring(cfg)
        row, samples = rescore(cfg), []
    elif wants_harness(cfg):
        return evaluate_harness(cfg)
    elif cfg.get("runs"):
        return evaluate_ensemble(cfg)
    else:
        row, module, _ = score(cfg, cfg.get("run"))
        samples = module.samples.get("test", [])
    write_results(cfg, row, samples)
    rows = append_row(cfg.out, row) if cfg.get("out") else [row]
    print(format_table(rows))
    return row


def score(cfg: DictConfig, run, name: str | None = None, collect: bool = False, labels: list | None = None):
    """Evaluate one model on the test split: (result row, the module, its TestLogits or None). collect=True keeps
    a classifier's test logits and labels (TestLogits), and refuses data whose label set is not `labels`
    (ensemble members)."""
    reset_peak_memory()  # each ensemble member reports its own peak
    with open_dict(cfg):
        if run:
            cfg.model = load_run_config(run).model  # the base the run trained; weights come from the run
        # Only the test split is scored: tokenize a few train rows (carving val/test from train happens before).
        cfg.data.train_size = min(cfg.data.get("train_size") or 64, 64)
        if cfg.data.get("long_targets"):
            cfg.data.long_targets = "truncate"
    L.seed_everything(cfg.seed, workers=True)
    tokenizer = load_tokenizer(cfg.model)
    # DPO, online RL: a base model is its own reference (implicit rewards 0, KL 0; one forward).
    task = build_task(cfg.data, cfg.model, policy_is_reference=run is None, run_cfg=cfg)
    encoded = task.encode(tokenizer, cfg.seed, cache_dir=cfg.paths.get("cache_dir"))
    collector = None
    if collect and encoded.label_names:  # a classifier
        check_labels(encoded, run, labels)
        collector = TestLogits()
    model = load_trained_model(task, cfg.model, run, encoded)
    model.eval()
    module = FineTuneModule(model, task, optimizer=None, scheduler_cfg=None, encoded=encoded)
    progress = PlainProgress(eval_every_s=OmegaConf.select(cfg, "callbacks.plain_progress.eval_every_s", default=60))
    trainer = L.Trainer(accelerator=cfg.trainer.accelerator, devices=1, precision=cfg.trainer.precision,
                        callbacks=[progress, *([collector] if collector else [])],
                        logger=build_loggers(cfg.get("logger"), cfg.get("task_name")) or False,
                        enable_checkpointing=False,
                        limit_test_batches=cfg.trainer.get("limit_test_batches") or 1.0,
                        enable_progress_bar=cfg.trainer.enable_progress_bar)
    start = time.perf_counter()
    results = trainer.test(module, datamodule=encoded.datamodule, verbose=False)[0]
    row = {
        "name": name or cfg.get("name") or (Path(run).name if run else Path(str(cfg.model.name_or_path)).name),
        "model": str(cfg.model.name_or_path),
        "weights": str(run) if run else None,
        "rows": len(encoded.datamodule.splits["test"]),
        **{k.removeprefix("test/"): float(v) for k, v in results.items()},
        "seconds": round(time.perf_counter() - start, 1),
        "precision": str(trainer.precision),  # what `auto` resolved to on this machine
        **peak_memory_mb(),
    }
    module.model = None  # ensembles score members one after another: free the weights before the next loads
    return row, module, collector


def check_rescoring(cfg: DictConfig) -> None:
    """predictions= scores saved text: no model to load, and the folder it reads keeps its own files."""
    others = [key for key in ("run", "runs") if cfg.get(key)] + (["harness.tasks"] if wants_harness(cfg) else [])
    if others:
        raise ConfigError(f"predictions= scores saved generations, and {' and '.join(others)} names a model to "
                          "score; give one of them.")
    folder = Path(str(cfg.predictions))
    folder = folder if folder.is_dir() else folder.parent
    if folder.resolve() == Path(cfg.paths.output_dir).resolve():
        raise ConfigError(f"predictions={cfg.predictions} is this evaluation's own output folder, whose "
                          "evaluation.json it would overwrite; leave hydra.run.dir unset or name another folder.")


def config_for_run(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """The evaluation config of `run=`: an online-RL run (data.task=ppo or rloo) is scored as it trained, on its own
    prompts (`data`), `rl` sampling settings and `reward`; the command line's overrides (Hydra's, as typed) change
    them, `data=<name>` takes other data (preference pairs) and `reward.run=`/`reward.fn=` another reward. Other
    runs are scored on the data the command line names, as given."""
    if not cfg.get("run"):
        return cfg
    saved = load_run_config(cfg.run)
    if saved.data.get("task") not in ONLINE_TASKS:
        return cfg
    named = [o.lstrip("+~").partition("=")[0] for o in overrides]
    given, cfg = cfg, copy.deepcopy(cfg)
    kept = {"data": "data" not in named, "rl": True, "reward": not {"reward", "reward.run", "reward.fn"} & set(named)}
    with open_dict(cfg):
        for section in (s for s, keep in kept.items() if keep):
            cfg[section] = copy.deepcopy(saved[section])
            for key in (k for k in named if k.startswith(f"{section}.")):  # the command line's, within the run's
                OmegaConf.update(cfg, key, OmegaConf.select(given, key), force_add=True)
    return cfg


def write_results(cfg: DictConfig, row: dict, samples: list[dict]) -> None:
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "evaluation.json").write_text(json.dumps(row, indent=2))
    if samples:
        with (out_dir / "predictions.jsonl").open("w") as f:
            f.writelines(json.dumps(s) + "\n" for s in samples)


def check_labels(encoded, run, labels) -> None:
    """The evaluation data must carry the label set the members were trained on (before weights load)."""
    names = encoded.label_names
    if labels and list(names) != list(labels):
        raise ConfigError(f"run={run} was trained on the labels {list(labels)}, but the evaluation data has "
                          f"{list(names)}; evaluate the ensemble on its own data (data=..., data.label_names=...).")


def evaluate_ensemble(cfg: DictConfig) -> dict:
    """Score each run of `runs` (a row each, files under members/<i>/), then their ensemble on the same rows."""
    runs = [str(r) for r in cfg.runs]
    shared = check_members(runs)  # before any weights load
    names = member_names(runs)
    out_dir = Path(cfg.paths.output_dir)
    rows, logits, labels, samples, module = [], [], [], [], None
    for i, (run, name) in enumerate(zip(runs, names, strict=True)):
        member_cfg = copy.deepcopy(cfg)
        with open_dict(member_cfg):
            member_cfg.paths.output_dir = str(out_dir / "members" / str(i))
        log.info("Ensemble member %d/%d: %s", i + 1, len(runs), run)
        row, module, collector = score(member_cfg, run, name=name, collect=True, labels=shared["labels"])
        member_samples = module.samples.get("test", [])
        write_results(member_cfg, row, member_samples)
        rows.append(row)
        if collector is not None:
            member_logits, member_labels = collector.all()
            logits.append(member_logits)
            labels.append(member_labels)
        samples.append(member_samples)
    start = time.perf_counter()
    if shared["task"] == "classification":
        metrics, predictions = classification_result(module.task, module.encoded, logits, labels), []
    else:
        metrics, predictions = generation_result(module.task, module.encoded, samples)
    row = {"name": cfg.get("name") or "ensemble", "model": rows[0]["model"], "weights": None, "members": runs,
           "rows": rows[0]["rows"], **metrics,
           "seconds": round(sum(r["seconds"] for r in rows) + time.perf_counter() - start, 1)}
    write_results(cfg, {**row, "member_results": rows}, predictions)
    table = [*rows, row]
    if cfg.get("out"):
        for r in table:
            table = append_row(cfg.out, r)
    print(format_table(table))
    return row


def member_names(runs: list[str]) -> list[str]:
    """Row labels: each run folder's name, or its last two path parts where names repeat (job 0 of two sweeps)."""
    names = [Path(r).name for r in runs]
    if len(set(names)) < len(names):
        names = ["/".join(Path(r).parts[-2:]) for r in runs]
    if len(set(names)) < len(names):
        names = [f"{n} [{i}]" for i, n in enumerate(names)]
    return names
