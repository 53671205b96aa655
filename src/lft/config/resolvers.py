"""The `${lft_*:...}` resolvers lft's configs use; registered once, when lft is imported."""

import os
import sys
from datetime import datetime
from pathlib import Path

from omegaconf import OmegaConf

from lft.config.paths import ASSETS
from lft.runs.layout import RESUMES


def run_dir(resume, fresh: str) -> str:
    """A resume logs into <run>/resumes/<time>, so the run's own files (and .hydra/) are never replaced.
    A SLURM job's run is named after the job, so a requeued job finds its own folder and continues it."""
    if resume:
        return f"{resume}/{RESUMES}/{datetime.now():%Y-%m-%d_%H-%M-%S}"
    job = os.environ.get("SLURM_ARRAY_JOB_ID") and f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID')}"
    job = job or os.environ.get("SLURM_JOB_ID")
    return str(Path(fresh).parent / f"slurm-{job}") if job else fresh


def auto_precision() -> str:
    """`precision=auto`: bf16 autocast where the hardware gains from it (lft/speed/precision.py)."""
    from lft.speed.precision import auto_precision  # torch loads only when a config asks for it

    return auto_precision()


RESOLVERS = {
    "lft_asset": (lambda name: str(ASSETS / name), False),  # data that ships inside the package
    "lft_terminal": (lambda: sys.stderr.isatty(), False),  # plain progress lines when output is not a terminal
    "lft_auto_precision": (auto_precision, False),
    "lft_run_dir": (run_dir, True),
}


def register() -> None:
    for name, (resolver, cached) in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver, use_cache=cached)
