"""`python -m lft.train [overrides]`: fine-tune a model as the composed Hydra config says.

train(cfg) is plain Python (tests call it directly); main() is the thin Hydra wrapper that returns the
monitored metric for sweepers, turns `resume=<run>` into that run's own config, and maps failures a user
can act on to one message and an exit code.

In a multirun (grid `-m`, Optuna, ...) a failing job must not end the sweep: any exception is written to
`<job folder>/failed.json` ({"error", "type", "traceback"}) and main() returns None, which sweepers record as
a failed trial; `python -m lft.report` lists such jobs as failed. A signal (RunStopped) still stops the sweep.
"""

import json
import logging
import os
import time
import traceback
from pathlib import Path

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from lft.callbacks import NonFiniteLossError
from lft.callbacks.trial_pruning import PRUNED, trial_pruning
from lft.config.errors import ConfigError
from lft.config.paths import CONFIG_DIR
from lft.config.validate import validate
from lft.models.loading import load_tokenizer
from lft.runs.folder import save_config, save_manifest, save_metrics, save_weights
from lft.runs.memory import peak_memory_mb, reset_peak_memory
from lft.runs.resume import (
    check_fresh_folder,
    check_resumable,
    data_only_checkpoints,
    last_checkpoint,
    requeued,
    resume_config,
)
from lft.runs.targets import targets
from lft.speed.check import FidelityCheck
from lft.speed.compile import compile_blocks
from lft.strategies import apply_strategy, strategy_callbacks
from lft.strategies.params import count_parameters
from lft.tasks import build_task
from lft.training.finders import tune_callbacks, tuned
from lft.training.loggers import build_loggers, finish_loggers, write_summary
from lft.training.module import FineTuneModule

log = logging.getLogger("lft")
EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_STOPPED = 2, 3, 143  # 143: the shell's code for a SIGTERM'd process


class RunStopped(Exception):
    """A signal (SIGTERM/SIGUSR1) stopped the run after its last checkpoint was written."""


def train(cfg: DictConfig) -> dict:
    """Fit, test the best checkpoint, and write the run folder. Returns the final metrics."""
    validate(cfg, "train")
    reset_peak_memory()  # this run's peak, not an earlier sweep job's in the same process
    run_dir = Path(cfg.paths.output_dir)
    resume = cfg.get("resume")
    prepare_run_folder(run_dir, resume)
    L.seed_everything(cfg.seed, workers=True)

    # Data first: bad columns or labels fail before any weights load. Tokenized splits are cached under
    # paths.cache_dir (data.cache), so a second run with the same data and tokenizer skips tokenizing.
    tokenizer = load_tokenizer(cfg.model)
    task = build_task(cfg.data, cfg.model, augment=cfg.get("augment"))
    datamodule = task.encode(tokenizer, cfg.seed, cache_dir=cfg.paths.get("cache_dir"))
    # A strategy may swap the task too (distillation wraps its loss with the teacher's).
    model, task = apply_strategy(task.build_model(cfg.model), cfg.strategy, task)
    if cfg.get("compile"):
        log.info("Compiled %d transformer blocks (torch.compile).", compile_blocks(model))
    module = FineTuneModule(model, task, instantiate(cfg.optimizer), cfg.scheduler)

    # The callbacks group, and groups that are one callback each (forgetting).
    nodes = [*(cfg.get("callbacks") or {}).values(), cfg.get("forgetting")]
    callbacks = [instantiate(c) for c in nodes if c and "_target_" in c]
    callbacks += strategy_callbacks(model) + tune_callbacks(cfg)  # tune: finders of batch size and lr
    callbacks.append(FidelityCheck())  # the speed paths on, and the first batch's loss against the stock forward
    callbacks += trial_pruning(cfg.monitor.metric)  # a search trial with a pruner (hydra/sweeper=lft)
    loggers = build_loggers(cfg.get("logger"), cfg.get("task_name")) or False
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers,
                                     enable_checkpointing=any(isinstance(c, Checkpoint) for c in callbacks))
    trainable, total = count_parameters(model)
    for logger in trainer.loggers:  # the whole resolved config, so dashboards can group and compare runs
        logger.log_hyperparams({**OmegaConf.to_container(cfg, resolve=True), "trainable_params": trainable,
                                "total_params": total, **datamodule.stats})
    if trainer.is_global_zero and not resume:
        save_config(cfg, run_dir)

    ckpt_path = last_checkpoint(run_dir) if resume else None
    if ckpt_path:
        log.info("Resuming %s from %s.", run_dir, ckpt_path)
    start = time.perf_counter()
    try:
        with data_only_checkpoints(ckpt_path):
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except SIGTERMException:
        finish_loggers(trainer.loggers)
        raise RunStopped(f"Stopped by a signal at optimizer step {trainer.global_step}; continue with "
                         f"`python -m lft.train resume={run_dir}`.") from None
    metrics = {
        "fit_seconds": round(time.perf_counter() - start, 1),
        "train_loop_seconds": round(module.train_loop_seconds, 2),
        "epochs": trainer.current_epoch,
        "optimizer_steps": trainer.global_step,
        "trainable_params": trainable,
        "total_params": total,
        **peak_memory_mb(),
        **datamodule.stats,  # what encoding counted, e.g. augment/changed
        **tuned(trainer),  # tune/batch_size, tune/lr
        **{k: float(v) for k, v in trainer.callback_metrics.items()},
    }
    if resume:
        metrics["resumed"] = True
    best = best_checkpoint(trainer)
    if best:
        metrics[f"best_{cfg.monitor.metric}"] = float(best.best_model_score)
    if cfg.get("test"):
        # Loads the best checkpoint's weights into the module, so the saved weights below are the best too.
        with data_only_checkpoints(best and best.best_model_path):
            results = trainer.test(module, datamodule=datamodule, ckpt_path=best and "best", weights_only=True)
        metrics.update({k: float(v) for k, v in results[0].items()})

    if trainer.is_global_zero:
        metrics["weights_dir"] = str(save_weights(model, tokenizer, run_dir))
        save_manifest(run_dir, {s: ds._fingerprint for s, ds in datamodule.splits.items()})
        save_metrics(metrics, run_dir)  # last: a run folder with metrics.json is a finished run
        write_summary(trainer.loggers, metrics)
        log.info("Run folder: %s", run_dir.resolve())
        log.info("Metrics: %s", {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()})
    finish_loggers(trainer.loggers)
    for callback in trainer.callbacks:  # a callback may fail a finished run (forgetting past its threshold)
        getattr(callback, "check_run", lambda: None)()
    return metrics


def prepare_run_folder(run_dir: Path, resume) -> None:
    """Refuse an unwritable folder or one holding another run, before any data or weights load."""
    if rank_zero_only.rank != 0:  # DDP's other ranks start later, in the folder rank 0 prepared
        return
    if resume:
        check_resumable(Path(resume))
    else:
        check_fresh_folder(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"The run folder {run_dir} cannot be written ({err.strerror}); set hydra.run.dir "
                          "(or paths.log_dir) to a writable place.") from None


def best_checkpoint(trainer) -> ModelCheckpoint | None:
    """The callback tracking the monitored metric, if it saved anything (callbacks=none has none)."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.best_model_path and callback.best_model_score is not None:
            return callback
    return None


FAILED_FILE = "failed.json"


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
    # The targets this command composes are the user's own; a run folder's others need trust_targets=[...].
    trusted = [*targets(cfg).values(), *(cfg.get("trust_targets") or [])]
    if cfg.get("resume"):
        cfg = resume_config(cfg.resume, list(HydraConfig.get().overrides.task), trusted)
    elif requeued(cfg.paths.output_dir):  # the same command again, after a preemption: continue the run
        log.info("SLURM requeue (restart %s): continuing %s.", os.environ["SLURM_RESTART_COUNT"],
                 cfg.paths.output_dir)
        cfg = resume_config(cfg.paths.output_dir, [], trusted)
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


def record_failure(err: BaseException) -> Path | None:
    if rank_zero_only.rank != 0:  # DDP: rank 0 owns the job folder
        return None
    try:
        return write_failure(Path(HydraConfig.get().runtime.output_dir), err)
    except OSError as write_err:
        log.error("Could not write %s: %s", FAILED_FILE, write_err)
        return None


def write_failure(run_dir: Path, err: BaseException, lines: int = 30) -> Path:
    """`<run_dir>/failed.json`: the error message, its class name and the traceback's last lines."""
    tb = "".join(traceback.format_exception(err)).rstrip().splitlines()
    path = Path(run_dir) / FAILED_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"error": str(err), "type": type(err).__name__, "traceback": "\n".join(tb[-lines:])},
                               indent=2))
    return path


if __name__ == "__main__":
    main()
