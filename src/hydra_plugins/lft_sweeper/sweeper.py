"""A Hydra sweeper that asks Optuna (>= 4) for trials, launches them through Hydra's launcher and tells the results.

Why not hydra-optuna-sweeper: it pins optuna 2.x, whose SQLite storage fails under SQLAlchemy 2, and keeps the
study in memory, so a killed search is lost. Here the study lives in a journal file (plain appends, no database)
in the sweep folder; the same command with `hydra.sweep.dir=<that folder>` loads it and runs only what is left.

Job folders are named by trial number (`<sweep dir>/<number>`, Hydra's job.num), so a resumed search numbers its
new jobs after every earlier trial and never writes into an earlier job's folder.
"""

import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig, OmegaConf

from lft.config.errors import ConfigError
from lft.runs.layout import FAILED, METRICS, SWEEP_BEST, SWEEP_JOURNAL

from .space import Param, parse_space

log = logging.getLogger(__name__)
SAMPLERS = ("random", "tpe")
DIRECTIONS = {"max": "maximize", "maximize": "maximize", "min": "minimize", "minimize": "minimize"}
PRUNED = "TrialPruned"  # the type a pruned job's failed.json records (lft/callbacks/trial_pruning.py)


class LftSweeper(Sweeper):
    def __init__(self, sampler: str, seed, n_trials: int, n_jobs: int, direction: str, n_startup_trials: int,
                 storage, study_name, params, pruner=None) -> None:
        super().__init__()
        self.sampler_name, self.seed, self.n_trials, self.n_jobs = sampler, seed, n_trials, n_jobs
        self.direction, self.n_startup_trials, self.storage_path = direction, n_startup_trials, storage
        self.study_name, self.params, self.pruner = study_name or "search", params, pruner
        self.hydra_context = self.config = self.launcher = self.storage = None

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                                task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        try:  # every mistake in the search's settings stops here, before any trial runs
            space = self.check(arguments)
            study = self.load_study()
        except ConfigError as err:  # Hydra would print a traceback; a user needs the one message
            print(f"Error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, self.sweep_dir / "multirun.yaml")
        self.close_interrupted(study)
        remaining = self.n_trials - sum(counts(t) for t in study.trials)
        log.info("Search %s (%s, %s %s): %d of %d trials to run; journal %s", self.study_name, self.sampler_name,
                 self.direction, self.metric, max(remaining, 0), self.n_trials, self.journal)
        returns = []
        while remaining > 0:
            batch = [study.ask() for _ in range(min(self.n_jobs, remaining))]
            returns.extend(self.run_batch(study, batch, space, arguments))
            remaining -= len(batch)
            self.write_best(study)
        self.write_best(study)
        return returns

    # --- settings --------------------------------------------------------------------------------------------
    @property
    def sweep_dir(self) -> Path:
        return Path(str(self.config.hydra.sweep.dir)).absolute()

    @property
    def journal(self) -> Path:
        return Path(str(self.storage_path)).absolute() if self.storage_path else self.sweep_dir / SWEEP_JOURNAL

    @property
    def metric(self) -> str:
        return str(OmegaConf.select(self.config, "monitor.metric", default="the returned value"))

    def check(self, arguments: list[str]) -> list[Param]:
        if self.sampler_name not in SAMPLERS:
            raise ConfigError(f"hydra.sweeper.sampler={self.sampler_name!r}: pick one of {', '.join(SAMPLERS)}.")
        if str(self.direction) not in DIRECTIONS:
            raise ConfigError(f"hydra.sweeper.direction={self.direction!r}: pick maximize or minimize (max/min).")
        self.direction = DIRECTIONS[str(self.direction)]
        for name in ("n_trials", "n_jobs"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"hydra.sweeper.{name}={getattr(self, name)!r}: give a whole number >= 1.")
        self.pruner = check_pruner(self.pruner)
        space = parse_space(self.params, self.config)
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        fixed = set()
        for override in parser.parse_overrides(arguments):
            key = override.get_key_element().lstrip("+~")
            if override.is_sweep_override():
                raise ConfigError(f"{key}: a search takes its values from hydra.sweeper.params, not a sweep on the "
                                  f"command line; put {key} in the space (or run a grid with -m instead).")
            fixed.add(key)
        # A key set on the command line is fixed: the simplest way to hold one of a shipped space's keys.
        held = [p.key for p in space if p.key.lstrip("+") in fixed]
        if held:
            log.info("Not searched (set on the command line): %s", ", ".join(held))
            space = [p for p in space if p.key not in held]
        if not space:
            raise ConfigError("every key of hydra.sweeper.params is set on the command line: nothing left to search.")
        return space

    def load_study(self):
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        if not self.journal.exists():
            self.check_folders([])
        self.journal.parent.mkdir(parents=True, exist_ok=True)
        self.storage = JournalStorage(JournalFileBackend(str(self.journal)))
        try:
            study = optuna.create_study(storage=self.storage, study_name=str(self.study_name), direction=self.direction,
                                        sampler=self.make_sampler(self.seed), load_if_exists=True)
        except ValueError as err:  # e.g. the journal's study was made with the other direction
            raise ConfigError(f"{self.journal}: cannot continue study {self.study_name!r} ({err}); resume with the "
                              "settings it was started with, or pick a new hydra.sweep.dir.") from None
        if study.direction.name.lower() != self.direction:
            raise ConfigError(f"{self.journal}: study {self.study_name!r} was started to "
                              f"{study.direction.name.lower()}, not {self.direction}; resume with the same "
                              "hydra.sweeper.direction, or pick a new hydra.sweep.dir.")
        self.check_folders(study.trials)
        if study.trials:  # a resumed search must not replay the first run's random draws
            study.sampler = self.make_sampler(None if self.seed is None else int(self.seed) + len(study.trials))
        return study

    def check_folders(self, trials) -> None:
        """Job folders of another sweep here would collide with the trials numbered into them."""
        numbers = {str(t.number) for t in trials}
        strangers = sorted(p.name for p in self.sweep_dir.glob("*") if p.name.isdigit() and p.name not in numbers)
        if strangers:
            raise ConfigError(f"{self.sweep_dir} holds job folders ({', '.join(strangers[:5])}) that are no trials of "
                              f"{self.journal}; a search resumes only its own sweep folder, so pick a new "
                              "hydra.sweep.dir.")

    def make_sampler(self, seed):
        import optuna

        seed = None if seed is None else int(seed)
        if self.sampler_name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.n_startup_trials)

    # --- trials ----------------------------------------------------------------------------------------------
    def run_batch(self, study, trials, space: list[Param], arguments: list[str]) -> list:
        """Launch the trials (numbered consecutively: one launcher call) and tell Optuna how each ended."""
        launch = []
        for trial in trials:
            overrides = list(arguments) + [p.override(p.suggest(trial)) for p in space] + self.pruning(trial.number)
            trial.set_user_attr("overrides", overrides)
            trial.set_user_attr("job_dir", str(self.sweep_dir / str(trial.number)))
            try:  # an override the config cannot take fails this trial, not the search
                self.validate_batch_is_legal([overrides])
            except Exception as err:
                self.fail(study, trial.number, f"{type(err).__name__}: {err}")
                continue
            launch.append((trial, overrides))
        results = []
        for group in consecutive(launch):
            returns = self.launcher.launch([o for _, o in group], initial_job_idx=group[0][0].number)
            for (trial, _), ret in zip(group, returns, strict=True):
                self.tell(study, trial, ret)
            results.append(returns)
        return results

    def pruning(self, number: int) -> list[str]:
        """Where the job's pruning callback finds its trial (lft/callbacks/trial_pruning.py): job env vars."""
        if not self.pruner:
            return []
        env = {"JOURNAL": str(self.journal), "STUDY": str(self.study_name), "TRIAL": number,
               "PRUNER": f"{self.pruner['n_startup_trials']},{self.pruner['n_warmup_steps']}"}
        return [f"++hydra.job.env_set.LFT_SEARCH_{k}={quote(v)}" for k, v in env.items()]

    def tell(self, study, trial, ret) -> None:
        job_dir = Path(str(ret.hydra_cfg.hydra.runtime.output_dir)) if ret.hydra_cfg else None
        if job_dir:
            trial.set_user_attr("job_dir", str(job_dir))
        if ret.status != JobStatus.COMPLETED:
            self.fail(study, trial.number, f"{type(ret._return_value).__name__}: {ret._return_value}")
            return
        value = ret.return_value
        error = job_error(job_dir) if value is None else None
        if error and error.startswith(f"{PRUNED}:"):
            log.info("Trial %d %s", trial.number, error.removeprefix(f"{PRUNED}: "))
            study.tell(trial.number, state=_state("PRUNED"))
        elif value is None:  # lft.train's sweep_job wrote failed.json and returned None
            self.fail(study, trial.number, error or f"the job returned no {self.metric}")
        elif not math.isfinite(float(value)):
            self.fail(study, trial.number, f"{self.metric} is {float(value)}")
        else:
            study.tell(trial.number, float(value))
            log.info("Trial %d: %s=%.6g (best so far: trial %d, %.6g)", trial.number, self.metric, float(value),
                     study.best_trial.number, study.best_value)

    def fail(self, study, number: int, error: str, **attrs) -> None:
        log.warning("Trial %d failed: %s; the search goes on.", number, error.splitlines()[0] if error else "")
        study_id = self.storage.get_study_id_from_name(str(self.study_name))
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(study_id, number)
        for key, value in {"error": error, **attrs}.items():
            self.storage.set_trial_user_attr(trial_id, key, value)
        study.tell(number, state=_state("FAIL"))

    def close_interrupted(self, study) -> None:
        """Trials a killed search left RUNNING: finished jobs (metrics.json) count, the others are FAIL."""
        for t in study.trials:
            if t.state.name not in ("RUNNING", "WAITING"):
                continue
            job_dir = Path(t.user_attrs.get("job_dir", self.sweep_dir / str(t.number)))
            value = finished_value(job_dir, self.metric)
            if value is not None:
                log.info("Trial %d (%s) finished before the search stopped: %s=%s", t.number, job_dir,
                         self.metric, value)
                study.tell(t.number, value)
                continue
            log.warning("Trial %d was interrupted (its job folder %s is left as it was); a new trial replaces it.",
                        t.number, job_dir)
            self.fail(study, t.number, f"interrupted: the search stopped while it ran (job folder {job_dir})",
                      interrupted=True)
            mark_interrupted(job_dir)

    def write_best(self, study) -> Path:
        states = [t.state.name for t in study.trials]
        done = [t for t in study.trials if t.state.name == "COMPLETE"]
        best = study.best_trial if done else None
        summary = {
            "study": str(self.study_name), "metric": self.metric, "direction": self.direction,
            "sampler": self.sampler_name, "journal": str(self.journal),
            "trials": {s.lower(): states.count(s) for s in sorted(set(states))},
            "best": best and {"number": best.number, "value": best.value, "params": best.params,
                              "job_dir": best.user_attrs.get("job_dir"),
                              "overrides": best.user_attrs.get("overrides")},
        }
        path = self.sweep_dir / SWEEP_BEST
        path.write_text(json.dumps(summary, indent=2))
        return path


def check_pruner(pruner) -> dict | None:
    if pruner is None:
        return None
    pruner = OmegaConf.to_container(pruner) if isinstance(pruner, DictConfig) else pruner
    if pruner == "median":
        pruner = {"type": "median"}
    if not isinstance(pruner, dict) or pruner.get("type") != "median" or set(pruner) - {"type", *PRUNER_DEFAULTS}:
        raise ConfigError(f"hydra.sweeper.pruner={pruner!r}: give null, or {{type: median, n_startup_trials: 2, "
                          "n_warmup_steps: 0}} (steps are optimizer steps).")
    pruner = {**PRUNER_DEFAULTS, **pruner}
    if any(not isinstance(pruner[k], int) or pruner[k] < 0 for k in PRUNER_DEFAULTS):
        raise ConfigError(f"hydra.sweeper.pruner: n_startup_trials and n_warmup_steps are whole numbers >= 0 "
                          f"(got {pruner}).")
    return pruner


PRUNER_DEFAULTS = {"n_startup_trials": 2, "n_warmup_steps": 0}


def quote(value) -> str:
    """A string as a quoted Hydra override value (paths may hold characters the grammar reads otherwise)."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def counts(trial) -> bool:
    """Trials that spend the budget: every ended one except those a killed search left (they are run again)."""
    name = trial.state.name
    return name in ("COMPLETE", "PRUNED") or (name == "FAIL" and not trial.user_attrs.get("interrupted"))


def consecutive(launch: list) -> list[list]:
    """Groups of trials with consecutive numbers: one launcher call numbers its jobs from initial_job_idx on."""
    groups = []
    for item in launch:
        if groups and item[0].number == groups[-1][-1][0].number + 1:
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


def job_error(job_dir: Path | None) -> str | None:
    try:
        failure = json.loads((job_dir / FAILED).read_text())
        return f"{failure['type']}: {failure['error']}"
    except (OSError, TypeError, ValueError, KeyError):
        return None


def finished_value(job_dir: Path, metric: str) -> float | None:
    try:
        value = float(json.loads((job_dir / METRICS).read_text())[metric])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return value if math.isfinite(value) else None


def mark_interrupted(job_dir: Path) -> None:
    """failed.json in an interrupted job's folder, so `lft.report` lists it as failed rather than running."""
    if job_dir.is_dir() and not (job_dir / FAILED).exists():
        (job_dir / FAILED).write_text(json.dumps(
            {"error": "the search was stopped while this job ran; the resumed search replaced it",
             "type": "Interrupted", "traceback": ""}, indent=2))


def _state(name: str):
    from optuna.trial import TrialState

    return TrialState[name]
