"""`resume=<run dir>`: continue a run in its own folder, from its last checkpoint, with its own config.

The run's saved config.yaml is the config; command-line overrides may only change how long it trains
(and other keys that cannot change its result), so the resumed run ends where an uninterrupted one would.
That config is data, not code: it may only name the `_target_`s lft/runs/targets.py allows.
"""

import logging
import os
import pickle
import re
from contextlib import contextmanager
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict

from lft.config.errors import ConfigError
from lft.runs import layout
from lft.runs.targets import check_run_targets, targets

log = logging.getLogger("lft")

# Keys a resume may change: train longer, and how progress is shown or checkpoints are kept.
RESUMABLE_KEYS = ("trainer.max_epochs", "trainer.max_steps", "trainer.enable_progress_bar",
                  "trainer.log_every_n_steps", "callbacks.last_checkpoint.every_n_steps")
# Files that make a folder an lft run: train() never writes into one unless resuming it.
RUN_MARKERS = (layout.CONFIG, layout.METRICS, layout.CHECKPOINTS)


def config_to_run(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """The config a train command runs: its own, or that of the run it continues (resume=, or the same command
    again after a SLURM preemption). overrides: the command's, which a resume may apply to the run's config."""
    # The targets this command composes are the user's own; a run folder's others need trust_targets=[...].
    trusted = [*targets(cfg).values(), *(cfg.get("trust_targets") or [])]
    if cfg.get("resume"):
        return resume_config(cfg.resume, overrides, trusted)
    if requeued(cfg.paths.output_dir):  # the same command again, after a preemption: continue the run
        log.info("SLURM requeue (restart %s): continuing %s.", os.environ["SLURM_RESTART_COUNT"],
                 cfg.paths.output_dir)
        return resume_config(cfg.paths.output_dir, [], trusted)
    return cfg


def requeued(run_dir) -> bool:
    """A SLURM job requeued after preemption, back in its own run folder (named after the job)."""
    return int(os.environ.get("SLURM_RESTART_COUNT", "0")) > 0 and last_checkpoint(run_dir).exists()


def is_run_folder(path: Path) -> bool:
    return any((Path(path) / marker).exists() for marker in RUN_MARKERS)


def check_fresh_folder(run_dir: Path) -> None:
    """A new run never writes into a folder that holds another run."""
    if is_run_folder(run_dir):
        raise ConfigError(f"{run_dir} already holds a run; runs never overwrite each other. Pick another "
                          f"hydra.run.dir, or continue that run with resume={run_dir}.")


def last_checkpoint(run_dir: Path) -> Path:
    return Path(run_dir) / layout.CHECKPOINTS / layout.LAST_CHECKPOINT


def check_resumable(run: Path) -> None:
    if not (run / layout.CONFIG).is_file():
        raise ConfigError(f"resume={run}: not an lft run folder (no config.yaml); pass the folder a "
                          "`python -m lft.train` run printed as its run folder.")
    if not last_checkpoint(run).exists():
        raise ConfigError(f"resume={run}: the run has no checkpoints/last.ckpt to continue from (it stopped "
                          "before its first checkpoint, or ran with callbacks=none); start it again instead.")


@contextmanager
def data_only_checkpoints(path):
    """Checkpoints are read with weights_only=True (tensors and plain data): one holding other objects is refused."""
    try:
        yield
    except pickle.UnpicklingError as err:  # torch.load(weights_only=True) met a Python object to rebuild
        found = re.search(r"GLOBAL (\S+)", str(err))
        raise ConfigError(
            f"{path} holds objects other than tensors and plain data{f' ({found[1]})' if found else ''}; "
            "unpickling them could run any code, so lft reads checkpoints with weights_only=True. The checkpoints "
            "lft writes hold none: continue from one of those, or start the run again.") from None


def resume_config(run_dir: str, overrides: list[str], trusted=()) -> DictConfig:
    """The run's own config, with the allowed overrides applied and its output folder pointing at the run.

    trusted: `_target_`s the user vouches for (their command's own and its trust_targets), beyond the allowlist.
    """
    run = Path(run_dir)
    check_resumable(run)
    if (run / layout.METRICS).exists() and not _trains_longer(overrides):
        raise ConfigError(f"resume={run_dir}: the run already finished (metrics.json); to train it further, "
                          "raise trainer.max_epochs or trainer.max_steps.")
    cfg = OmegaConf.load(run / layout.CONFIG)
    check_run_targets(cfg, f"resume={run_dir}", trusted)  # the folder's own trust_targets count for nothing
    _repoint(cfg, str(cfg.paths.output_dir), str(run.resolve()))  # absolute, as in the run it continues
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key in ("resume", "trust_targets") or key.startswith("hydra"):
            continue
        if key not in RESUMABLE_KEYS:
            raise ConfigError(f"resume: {override!r} would change the resumed run's result; a resume takes the "
                              f"run's own config and may only set {', '.join(RESUMABLE_KEYS)}. Start a new run "
                              "to change anything else.")
        OmegaConf.update(cfg, key, yaml.safe_load(value), force_add=True)
    with open_dict(cfg):
        cfg.resume = str(run)
    return cfg


def _trains_longer(overrides: list[str]) -> bool:
    return any(o.lstrip("+").startswith(("trainer.max_epochs=", "trainer.max_steps=")) for o in overrides)


def _repoint(cfg, old: str, new: str) -> None:
    """Paths inside the run (checkpoints, loggers) follow the folder if it was moved or copied."""
    for key in list(cfg.keys()):
        value = cfg[key]
        if isinstance(value, DictConfig):
            _repoint(value, old, new)
        elif isinstance(value, str) and (value == old or value.startswith(old + "/")):
            cfg[key] = new + value[len(old):]
