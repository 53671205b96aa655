"""A Hydra callback that refuses a run folder already holding a run, before Hydra writes its .hydra/ files."""

import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from lightning.pytorch.utilities import rank_zero_only

from lft.resume import is_run_folder, requeued


class RunFolderGuard(Callback):
    def on_run_start(self, config, **kwargs) -> None:
        if config.get("resume") or rank_zero_only.rank != 0:  # DDP's other ranks rerun the command in it
            return
        run_dir = Path(str(config.hydra.run.dir))
        if is_run_folder(run_dir) and not requeued(run_dir):
            print(f"Error: {run_dir} already holds a run; runs never overwrite each other. Pick another "
                  f"hydra.run.dir, or continue that run with resume={run_dir}.", file=sys.stderr)
            raise SystemExit(2)
