"""Experiment loggers from config (CSV, TensorBoard, wandb); wandb drops to offline without credentials."""

import csv
import logging
import netrc
import os
from pathlib import Path

from hydra.utils import instantiate

log = logging.getLogger(__name__)


def build_loggers(logger_cfg) -> list:
    loggers = []
    for name, cfg in (logger_cfg or {}).items():
        if "_target_" not in cfg:
            continue
        if name == "wandb" and not cfg.get("offline") and not wandb_credentials():
            log.warning("wandb: no WANDB_API_KEY or login found, logging offline (sync later with `wandb sync`).")
            cfg = {**cfg, "offline": True}
        loggers.append(instantiate(cfg))
    return loggers


def wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE") in ("offline", "disabled"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def finish_loggers(loggers) -> None:
    """Close wandb runs so their summary is written (Lightning leaves them open for the process)."""
    if any(type(logger).__name__ == "WandbLogger" for logger in loggers):
        import wandb

        wandb.finish()


SAMPLE_COLUMNS = ("row", "prompt", "reference", "prediction")


def log_samples(loggers, rows: list[dict], stage: str, step: int) -> None:
    """A table of generated samples per evaluation: CSV file, TensorBoard text, or wandb table."""
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger

    table = [[str(r.get(c, "")) for c in SAMPLE_COLUMNS] for r in rows]
    for logger in loggers:
        if isinstance(logger, CSVLogger):
            out = Path(logger.log_dir) / "samples" / f"{stage}_step{step}.csv"
            out.parent.mkdir(parents=True, exist_ok=True)
            with out.open("w", newline="") as f:
                csv.writer(f).writerows([SAMPLE_COLUMNS, *table])
        elif isinstance(logger, TensorBoardLogger):
            md = "| " + " | ".join(SAMPLE_COLUMNS) + " |\n|" + "---|" * len(SAMPLE_COLUMNS) + "\n"
            md += "\n".join("| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table)
            logger.experiment.add_text(f"{stage}/samples", md, step)
        elif isinstance(logger, WandbLogger):
            logger.log_text(key=f"{stage}/samples", columns=list(SAMPLE_COLUMNS), data=table)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")
