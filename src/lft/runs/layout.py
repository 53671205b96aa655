"""A run folder's layout: every file and folder name lft writes into a run, in one place.

<run>/config.yaml        the resolved config (resume= and lft.evaluate read it)
<run>/metrics.json       final metrics: the run finished
<run>/failed.json        a sweep job's error: the run failed
<run>/checkpoints/       last.ckpt (exact resume) and the best checkpoint
<run>/adapter/ | model/  the trained weights: a peft adapter, or the whole model
<run>/resumes/<time>/    the logs of each resume
<run>/.hydra/            Hydra's record of the command
"""

from pathlib import Path

CONFIG = "config.yaml"
METRICS = "metrics.json"
FAILED = "failed.json"
CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
ADAPTER = "adapter"
MODEL = "model"
RESUMES = "resumes"
HYDRA = ".hydra"
LR_PLOT = "lr_find.png"


def weights_folder(run) -> Path | None:
    """The run's trained weights: model/ (a whole model) before adapter/ (a peft adapter); None if neither."""
    return next((Path(run) / sub for sub in (MODEL, ADAPTER) if (Path(run) / sub).is_dir()), None)
