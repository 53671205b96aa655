"""failed.json: a failing sweep job's error, written into its job folder so the sweep goes on.

`python -m lft.train -m ...` (grid, Optuna) records any exception of a job there ({"error", "type", "traceback"})
and returns None, which sweepers count as a failed trial; `python -m lft.report` lists such jobs as failed.
"""

import json
import logging
import traceback
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.utilities import rank_zero_only

from lft.runs.layout import FAILED

log = logging.getLogger("lft")


def record_failure(err: BaseException) -> Path | None:
    """failed.json in the running Hydra job's folder; None on other DDP ranks or if it cannot be written."""
    if rank_zero_only.rank != 0:  # DDP: rank 0 owns the job folder
        return None
    try:
        return write_failure(Path(HydraConfig.get().runtime.output_dir), err)
    except OSError as write_err:
        log.error("Could not write %s: %s", FAILED, write_err)
        return None


def write_failure(run_dir: Path, err: BaseException, lines: int = 30) -> Path:
    """`<run_dir>/failed.json`: the error message, its class name and the traceback's last lines."""
    tb = "".join(traceback.format_exception(err)).rstrip().splitlines()
    path = Path(run_dir) / FAILED
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"error": str(err), "type": type(err).__name__, "traceback": "\n".join(tb[-lines:])},
                               indent=2))
    return path
