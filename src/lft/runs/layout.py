"""A run folder's layout: every file and folder name lft writes into a run, in one place.

<run>/config.yaml        the resolved config (resume= and lft.evaluate read it)
<run>/metrics.json       final metrics: the run finished
<run>/failed.json        a sweep job's error: the run failed
<run>/manifest.json      package versions, git commit and data fingerprints
<run>/checkpoints/       last.ckpt (exact resume) and best.ckpt (its name set in conf/callbacks/default.yaml)
<run>/adapter/ | model/  the trained weights: a peft adapter, or the whole model
<run>/resumes/<time>/    the logs of each resume
<run>/lr_find.png        tune.lr=find's loss-vs-lr curve
<run>/forgetting.json    the retention scores before and after training (forgetting=...)
<run>/.hydra/            Hydra's record of the command (config.yaml, overrides.yaml)

A search (hydra/sweeper=lft) keeps its study beside the job folders: <sweep>/study.journal and <sweep>/best.json.
"""

from pathlib import Path

CONFIG = "config.yaml"
METRICS = "metrics.json"
FAILED = "failed.json"
MANIFEST = "manifest.json"
CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
ADAPTER = "adapter"
MODEL = "model"
RESUMES = "resumes"
LR_PLOT = "lr_find.png"
FORGETTING = "forgetting.json"
HYDRA = ".hydra"
HYDRA_OVERRIDES = "overrides.yaml"
SWEEP_JOURNAL = "study.journal"
SWEEP_BEST = "best.json"


def weights_folder(run) -> Path | None:
    """The run's trained weights: model/ (a whole model) before adapter/ (a peft adapter); None if neither."""
    return next((Path(run) / sub for sub in (MODEL, ADAPTER) if (Path(run) / sub).is_dir()), None)
