"""`python -m lft.train [overrides]`: fine-tune a model as the composed Hydra config says.

The run itself is lft/recipes/train.py's train(cfg) (plain Python: tests call it directly, re-exported here).
main() is the thin Hydra wrapper: it returns the monitored metric for sweepers, turns `resume=<run>` into that
run's own config (lft/runs/resume.py), and maps failures a user can act on to one message and an exit code.

In a multirun (grid `-m`, Optuna, ...) a failing job must not end the sweep: any exception is written to
`<job folder>/failed.json` (lft/runs/failure.py) and main() returns None, which sweepers record as a failed
trial; `python -m lft.report` lists such jobs as failed. A signal (RunStopped) still stops the sweep.
"""

import logging

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from lft.callbacks import NonFiniteLossError
from lft.callbacks.trial_pruning import PRUNED
from lft.config.errors import ConfigError
from lft.config.paths import CONFIG_DIR
from lft.recipes.train import RunStopped, train
from lft.runs.failure import record_failure
from lft.runs.resume import config_to_run

__all__ = ["RunStopped", "main", "train"]
log = logging.getLogger("lft")
EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_STOPPED = 2, 3, 143  # 143: the shell's code for a SIGTERM'd process


@hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    if in_multirun():
        return sweep_job(cfg)
    try:
        return run(cfg)
    except ConfigError as err:
        log.error("%s", err)
        raise SystemExit(EXIT_BAD_INPUT) from None
    except NonFiniteLossError as err:
        log.error("%s", err)
        raise SystemExit(EXIT_DIVERGED) from None
    except RunStopped as err:
        log.warning("%s", err)
        raise SystemExit(EXIT_STOPPED) from None


def run(cfg: DictConfig) -> float | None:
    """Train (or continue) the run the config names; returns its monitored metric."""
    cfg = config_to_run(cfg, list(HydraConfig.get().overrides.task))
    return train(cfg).get(cfg.monitor.metric)


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def sweep_job(cfg: DictConfig) -> float | None:
    """One job of a sweep: a failure is written to failed.json and returns None, so the sweep goes on."""
    try:
        return run(cfg)
    except RunStopped as err:  # preempted: the whole sweep stops (the job is resumable, not failed)
        log.warning("%s", err)
        record_failure(err)
        raise SystemExit(EXIT_STOPPED) from None
    except Exception as err:
        if type(err).__name__ == PRUNED:  # a search's pruner stopped it: expected, recorded for the sweeper
            log.info("Trial %s; the search goes on.", err)
            record_failure(err)
            return None
        if isinstance(err, (ConfigError, NonFiniteLossError)):  # their message says what to fix
            log.error("%s", err)
        else:
            log.exception("%s: %s", type(err).__name__, err)
        path = record_failure(err)
        log.error("This sweep job failed (%s)%s; the sweep goes on.", type(err).__name__,
                  f", recorded in {path}" if path else "")
        return None


if __name__ == "__main__":
    main()
