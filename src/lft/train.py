"""`python -m lft.train [overrides]`: fine-tune a model as the composed Hydra config says.

train(cfg) is plain Python (tests call it directly); main() is the thin Hydra wrapper that returns the
monitored metric for sweepers.
"""

import logging
import time
from pathlib import Path

import hydra
import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from lft import CONFIG_DIR
from lft.checks import check_config
from lft.errors import ConfigError
from lft.loggers import build_loggers, finish_loggers
from lft.models import load_tokenizer
from lft.module import FineTuneModule
from lft.run_folder import save_config, save_manifest, save_metrics, save_weights
from lft.strategies import apply_strategy
from lft.strategies.params import count_parameters
from lft.tasks import build_task

log = logging.getLogger("lft")


def train(cfg: DictConfig) -> dict:
    """Fit, test the best checkpoint, and write the run folder. Returns the final metrics."""
    check_config(cfg)
    run_dir = Path(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True)

    # Data first: bad columns or labels fail before any weights load.
    tokenizer = load_tokenizer(cfg.model)
    task = build_task(cfg.data, cfg.model)
    datamodule = task.encode(tokenizer, cfg.seed)
    # A strategy may swap the task too (distillation wraps its loss with the teacher's).
    model, task = apply_strategy(task.build_model(cfg.model), cfg.strategy, task)
    module = FineTuneModule(model, task, instantiate(cfg.optimizer), cfg.scheduler)

    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c and "_target_" in c]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=build_loggers(cfg.get("logger")) or False)
    trainable, total = count_parameters(model)
    for logger in trainer.loggers:  # the whole resolved config, so dashboards can group and compare runs
        logger.log_hyperparams({**OmegaConf.to_container(cfg, resolve=True), "trainable_params": trainable,
                                "total_params": total})
    if trainer.is_global_zero:
        save_config(cfg, run_dir)

    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    metrics = {
        "fit_seconds": round(time.perf_counter() - start, 1),
        "epochs": trainer.current_epoch,
        "optimizer_steps": trainer.global_step,
        "trainable_params": trainable,
        "total_params": total,
        **{k: float(v) for k, v in trainer.callback_metrics.items()},
    }
    checkpoint = trainer.checkpoint_callback if isinstance(trainer.checkpoint_callback, ModelCheckpoint) else None
    best = checkpoint.best_model_path if checkpoint and checkpoint.best_model_path else None
    if best:
        metrics[f"best_{cfg.monitor.metric}"] = float(checkpoint.best_model_score)
    if cfg.get("test"):
        # Loads the best checkpoint's weights into the module, so the saved weights below are the best too.
        results = trainer.test(module, datamodule=datamodule, ckpt_path=best and "best")
        metrics.update({k: float(v) for k, v in results[0].items()})

    if trainer.is_global_zero:
        metrics["weights_dir"] = str(save_weights(model, tokenizer, run_dir))
        save_manifest(run_dir, {s: ds._fingerprint for s, ds in datamodule.splits.items()})
        save_metrics(metrics, run_dir)
        log.info("Run folder: %s", run_dir.resolve())
        log.info("Metrics: %s", {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()})
    finish_loggers(trainer.loggers)
    return metrics


@hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics = train(cfg)
    except ConfigError as err:
        log.error("%s", err)
        raise SystemExit(2) from None
    return metrics.get(cfg.monitor.metric)


if __name__ == "__main__":
    main()
