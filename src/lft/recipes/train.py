"""One training run as plain Python: build the task, model, strategy, callbacks and trainer from a composed
config, fit, test the best checkpoint, and write the run folder. `python -m lft.train` (lft/train.py) calls
train(cfg) after Hydra composed the config; tests and the bench call it directly.
"""

import logging
import time
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, Checkpoint, ModelCheckpoint, Timer
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from lft.callbacks.fidelity_check import FidelityCheck
from lft.callbacks.finders import tune_callbacks, tuned
from lft.callbacks.trial_pruning import trial_pruning
from lft.config.validate import validate
from lft.models.loading import load_tokenizer
from lft.runs.folder import prepare_run_folder, save_config, save_manifest, save_metrics, save_weights
from lft.runs.memory import peak_memory_mb, reset_peak_memory
from lft.runs.resume import data_only_checkpoints, last_checkpoint
from lft.speed.compile import compile_blocks
from lft.strategies import apply_strategy, strategy_callbacks
from lft.strategies.params import count_parameters
from lft.tasks import build_task
from lft.training.finetune_module import FineTuneModule
from lft.training.loggers import build_loggers, finish_loggers, write_summary

log = logging.getLogger("lft")


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
    task = build_task(cfg.data, cfg.model, augment=cfg.get("augment"), run_cfg=cfg)
    encoded = task.encode(tokenizer, cfg.seed, cache_dir=cfg.paths.get("cache_dir"))
    datamodule = encoded.datamodule
    # A strategy may swap the task too (distillation wraps its loss with the teacher's).
    model, task = apply_strategy(task.build_model(cfg.model, encoded), cfg.strategy, task)
    if cfg.get("compile"):
        log.info("Compiled %d transformer blocks (torch.compile).", compile_blocks(model))
    module = FineTuneModule(model, task, instantiate(cfg.optimizer), cfg.scheduler, encoded)

    callbacks = run_callbacks(cfg, model)
    loggers = build_loggers(cfg.get("logger"), cfg.get("task_name")) or False
    # Online RL steps its optimizer itself and clips there (tasks/rl.py): Lightning refuses to clip manual steps.
    manual = {"gradient_clip_val": None} if getattr(task, "online", False) else {}
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers,
                                     enable_checkpointing=any(isinstance(c, Checkpoint) for c in callbacks), **manual)
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
        # Lightning's Timer keeps its training clock in every checkpoint: this segment's fit time plus the earlier
        # segments' (less any work a kill lost after the last checkpoint). The Timer's own clock leaves out setup,
        # so only the earlier segments' share of it is added to the wall time measured here.
        metrics.update(resumed=True, fit_seconds_total=round(metrics["fit_seconds"] + earlier_fit_seconds(trainer), 1))
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


def run_callbacks(cfg: DictConfig, model) -> list[Callback]:
    """The config's callbacks group and one-callback groups (forgetting), then those the run itself needs."""
    nodes = [*(cfg.get("callbacks") or {}).values(), cfg.get("forgetting")]
    callbacks = [instantiate(c) for c in nodes if c and "_target_" in c]
    callbacks += strategy_callbacks(model) + tune_callbacks(cfg)  # tune: finders of batch size and lr
    callbacks.append(FidelityCheck())  # the speed paths on, and the first batch's loss against the stock forward
    callbacks.append(Timer(verbose=False))  # no limit: a clock that resumes with the run (fit_seconds_total)
    callbacks += trial_pruning(cfg.monitor.metric)  # a search trial with a pruner (hydra/sweeper=lft)
    return callbacks


def earlier_fit_seconds(trainer) -> float:
    """The training time the resumed checkpoint's clock brought: the Timer's total less this segment's."""
    timer = next(c for c in trainer.callbacks if isinstance(c, Timer))
    start, end = timer.start_time("train"), timer.end_time("train")
    # Both are set once training began, also when the checkpoint was the last step; none where it never did.
    return timer.time_elapsed("train") - (end - start if start is not None and end is not None else 0.0)


def best_checkpoint(trainer) -> ModelCheckpoint | None:
    """The callback tracking the monitored metric, if it saved anything (callbacks=none has none)."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.best_model_path and callback.best_model_score is not None:
            return callback
    return None
