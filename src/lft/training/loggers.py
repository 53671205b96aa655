"""Experiment loggers from config (CSV, TensorBoard, wandb, MLflow); wandb drops to offline without credentials.

In a Hydra multirun every job is its own wandb run; where the user set none, lft fills its `group` (the sweep:
task name + sweep folder name), `tags` (the job's overrides) and `name` (job number + the overrides the sweep
varies), so a dashboard groups the jobs of one sweep and tells them apart. MLflow gets the same: one experiment
per sweep, run names, and the job's overrides as a tag (lft.training.mlflow_logger).
"""

import csv
import importlib.util
import logging
import netrc
import os
import sys
from pathlib import Path

from hydra.utils import instantiate

from lft.config.errors import ConfigError

log = logging.getLogger(__name__)


def build_loggers(logger_cfg, task_name: str | None = None) -> list:
    """task_name names a single run's wandb run (where wandb.name is null) and prefixes a sweep's group."""
    loggers = []
    for name, cfg in (logger_cfg or {}).items():
        if "_target_" not in cfg:
            continue
        if name == "wandb":
            cfg = {**cfg, **wandb_run_settings(cfg, task_name)}
            if not cfg.get("offline") and not wandb_credentials():
                log.warning("wandb: no WANDB_API_KEY or login found, logging offline (sync later with `wandb sync`).")
                cfg["offline"] = True
        if name == "mlflow":
            cfg = {**cfg, **mlflow_run_settings(cfg, task_name)}
        loggers.append(instantiate(cfg))
    return loggers


TAG_LENGTH = 64  # wandb refuses longer tags


def wandb_run_settings(cfg, task_name: str | None) -> dict:
    """The group, tags and name lft fills for wandb where the user left them unset (null, [])."""
    job = sweep_job()
    out = {}
    if job is None:
        if not cfg.get("name") and task_name:
            out["name"] = task_name
        return out
    overrides = job_overrides(job)
    if not cfg.get("group"):
        sweep = Path(str(job.sweep.dir)).name
        out["group"] = f"{task_name}-{sweep}" if task_name else sweep
    if not cfg.get("tags"):
        out["tags"] = [tag[:TAG_LENGTH] for tag in overrides]
    if not cfg.get("name"):
        keys = swept_keys(job)
        shown = [o for o in overrides if o.partition("=")[0].lstrip("+~") in keys] or overrides
        out["name"] = " ".join([str(job.job.num), *shown])
    return out


def mlflow_run_settings(cfg, task_name: str | None) -> dict:
    """What lft fills for MLflow where the user left it unset: wandb's group, name and tags as the experiment,
    the run name and an `overrides` tag."""
    if importlib.util.find_spec("mlflow") is None:
        raise ConfigError("logger=mlflow needs the mlflow package: pip install 'lft[mlflow]' (or pip install mlflow).")
    named = wandb_run_settings({}, task_name)
    out = {}
    if not cfg.get("experiment_name"):
        out["experiment_name"] = named.get("group") or task_name or "lft"
    if not cfg.get("run_name") and "group" in named:  # a multirun's job; a single run keeps MLflow's name
        out["run_name"] = named["name"]
    job = sweep_job()
    if not cfg.get("tags") and job is not None:
        out["tags"] = {"overrides": " ".join(job_overrides(job))}
    return out


def sweep_job():
    """Hydra's config of this job when it is a job of a multirun, else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    return hydra_cfg if hydra_cfg.mode == RunMode.MULTIRUN else None


def job_overrides(hydra_cfg) -> list[str]:
    """The job's own command-line overrides (hydra.overrides.task), without Hydra's settings (hydra.*)."""
    return [str(o) for o in hydra_cfg.overrides.task if not str(o).lstrip("+~").startswith("hydra")]


def swept_keys(hydra_cfg) -> set[str]:
    """Keys the sweep varies: sweep overrides on the command line (a=1,2; range(), choice()) and the
    sweeper's own `params` (Optuna search spaces, the basic sweeper's hydra.sweeper.params)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    keys = set((hydra_cfg.sweeper.get("params") or {}).keys())
    parser = OverridesParser.create()
    for arg in sys.argv[1:]:
        if "=" not in arg or arg.startswith("-"):
            continue
        try:
            override = parser.parse_override(arg)
        except Exception:  # not an override Hydra would read: it cannot vary anything
            continue
        if override.is_sweep_override():
            keys.add(override.key_or_group)
    return keys


def wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE") in ("offline", "disabled"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def write_summary(loggers, metrics: dict) -> None:
    """The run's final metrics (metrics.json) as its wandb summary or MLflow's final metrics: the values a sweep's
    runs are compared by."""
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger":
            logger.experiment.summary.update(metrics)
        elif hasattr(logger, "log_final"):  # lft.training.mlflow_logger.MLflowLogger
            logger.log_final(metrics)


def finish_loggers(loggers) -> None:
    """Close wandb runs so their summary is written (Lightning leaves them open for the process)."""
    if any(type(logger).__name__ == "WandbLogger" for logger in loggers):
        import wandb

        wandb.finish()


def log_samples(loggers, rows: list[dict], stage: str, step: int) -> None:
    """A table of generated samples per evaluation: CSV file, TensorBoard text, or wandb table. Its columns are
    the rows' own single-valued fields (row, prompt, reference, prediction; online RL: response, reward;
    a mixture: task)."""
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger

    columns = list(dict.fromkeys(c for r in rows for c, v in r.items() if not isinstance(v, list)))
    table = [[str(r.get(c, "")) for c in columns] for r in rows]
    for logger in loggers:
        if isinstance(logger, CSVLogger):
            out = Path(logger.log_dir) / "samples" / f"{stage}_step{step}.csv"
            out.parent.mkdir(parents=True, exist_ok=True)
            with out.open("w", newline="") as f:
                csv.writer(f).writerows([columns, *table])
        elif isinstance(logger, TensorBoardLogger):
            md = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
            md += "\n".join("| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table)
            logger.experiment.add_text(f"{stage}/samples", md, step)
        elif isinstance(logger, WandbLogger):
            logger.log_text(key=f"{stage}/samples", columns=columns, data=table)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")
