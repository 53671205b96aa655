"""Experiment loggers from config (CSV, TensorBoard, wandb); wandb drops to offline without credentials."""

import logging
import netrc
import os

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
