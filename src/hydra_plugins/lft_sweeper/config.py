"""The sweeper's config, `hydra/sweeper: lft` (conf/hparams_search/random.yaml and optuna.yaml select it)."""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class LftSweeperConf:
    _target_: str = "hydra_plugins.lft_sweeper.sweeper.LftSweeper"
    # random (optuna RandomSampler) or tpe (TPESampler, Bayesian); both seeded from `seed`.
    sampler: str = "tpe"
    seed: Any = "${seed}"
    # The whole budget: trials that run to an end (finished or failed); a resumed search runs only the rest.
    n_trials: int = 10
    # Trials launched together (one launcher batch): 1 runs them one after another; more with a parallel launcher.
    n_jobs: int = 1
    # maximize|minimize (or max|min, as monitor.mode writes it): what to do with monitor.metric.
    direction: str = "${monitor.mode}"
    # TPE samples at random for its first trials, then models the results.
    n_startup_trials: int = 4
    # Journal file of the study; null: <hydra.sweep.dir>/study.journal (a resume finds it there).
    storage: Any = None
    study_name: Any = "${task_name}"
    # Stop trials that lag: null (off) or {type: median, n_startup_trials: 2, n_warmup_steps: 0}. Each validation
    # reports monitor.metric to the trial (by optimizer step); a trial behind the median of earlier trials at the
    # same step stops and is told PRUNED.
    pruner: Any = None
    # The search space: {config key: {type: float|int|categorical, ...}} (see space.py and docs/search.md).
    params: dict[str, Any] = field(default_factory=dict)


ConfigStore.instance().store(group="hydra/sweeper", name="lft", node=LftSweeperConf, provider="lft")
