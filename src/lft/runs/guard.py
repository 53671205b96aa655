"""A Hydra callback that refuses a run folder already holding a run, before Hydra writes its .hydra/ files."""

import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from lightning.pytorch.utilities import rank_zero_only

from lft.config.errors import ConfigError
from lft.runs.resume import check_fresh_folder, requeued


class RunFolderGuard(Callback):
    def on_run_start(self, config, **kwargs) -> None:
        if config.get("resume") or rank_zero_only.rank != 0:  # DDP's other ranks rerun the command in it
            return
        run_dir = Path(str(config.hydra.run.dir))
        if requeued(run_dir):
            return
        try:
            check_fresh_folder(run_dir)
        except ConfigError as err:  # Hydra's logging is not set up yet
            print(f"Error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
