"""lft: fine-tune language models with Lightning and Hydra."""

import os
import sys
from datetime import datetime
from pathlib import Path

from omegaconf import OmegaConf

ASSETS = Path(__file__).parent / "assets"
# The repo's conf/ (lft is installed editable; the configs are the user-facing surface).
CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"

# `${lft_asset:name}` in a config points at data that ships inside the package.
if not OmegaConf.has_resolver("lft_asset"):
    OmegaConf.register_new_resolver("lft_asset", lambda name: str(ASSETS / name))

# Plain progress lines replace the bar when output is not a terminal (a SLURM log, a file).
if not OmegaConf.has_resolver("lft_terminal"):
    OmegaConf.register_new_resolver("lft_terminal", lambda: sys.stderr.isatty())


def _run_dir(resume, fresh: str) -> str:
    """A resume logs into <run>/resumes/<time>, so the run's own files (and .hydra/) are never replaced.
    A SLURM job's run is named after the job, so a requeued job finds its own folder and continues it."""
    if resume:
        return f"{resume}/resumes/{datetime.now():%Y-%m-%d_%H-%M-%S}"
    job = os.environ.get("SLURM_ARRAY_JOB_ID") and f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID')}"
    job = job or os.environ.get("SLURM_JOB_ID")
    return str(Path(fresh).parent / f"slurm-{job}") if job else fresh


# `precision=auto`: bf16 autocast where the hardware gains from it (lft/precision.py).
if not OmegaConf.has_resolver("lft_auto_precision"):
    OmegaConf.register_new_resolver("lft_auto_precision", lambda: __import__("lft.precision").precision.auto_precision())

if not OmegaConf.has_resolver("lft_run_dir"):
    OmegaConf.register_new_resolver("lft_run_dir", _run_dir, use_cache=True)

__version__ = "0.1.0"
