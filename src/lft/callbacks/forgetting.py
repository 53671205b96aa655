"""Catastrophic-forgetting check: retention sets scored before the first training step and after the last.

`forgetting=text` (conf/forgetting/): each retention set is a data config (its own task, metrics and test rows;
`data.members`-style settings change its path or size) evaluated on the model being trained, exactly as
`lft.evaluate` would score it: perplexity on general text, the metrics of an earlier task. The run folder gets
forgetting.json ({set: {metric: {before, after, change}}}); metrics.json and every logger get
`forgetting/<set>/<metric>_{before,after,change}`. `max_perplexity_increase` fails the run (after the run folder is
complete: weights, metrics.json) when a set's perplexity rose by more than that fraction.
"""

import json
import logging
import math
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig

from lft.config.errors import ConfigError
from lft.runs.layout import FORGETTING

log = logging.getLogger(__name__)


class ForgettingExceeded(ConfigError):
    """A retention set's perplexity rose past forgetting.max_perplexity_increase."""


class ForgettingCheck(Callback):
    def __init__(self, retention: DictConfig, model: DictConfig, seed: int = 0, output_dir: str | None = None,
                 max_perplexity_increase: float | None = None, cache_dir: str | None = None):
        if not retention:
            raise ConfigError("forgetting.retention names no data config; e.g. forgetting.retention.text.path=...")
        if max_perplexity_increase is not None and not max_perplexity_increase >= 0:
            raise ConfigError(f"forgetting.max_perplexity_increase={max_perplexity_increase!r} must be a number "
                              ">= 0 (0.1: fail past a 10% rise) or null.")
        self.retention, self.model_cfg, self.seed, self.cache_dir = retention, model, seed, cache_dir
        self.sets = {}
        self.output_dir = Path(output_dir) if output_dir else None
        self.max_increase = max_perplexity_increase
        self.before: dict[str, dict[str, float]] = {}
        self.report: dict[str, dict[str, dict[str, float]]] = {}

    def setup(self, trainer, pl_module, stage: str) -> None:
        """Load and encode every retention set before the first step (a set that does not load stops the run)."""
        from lft.data.mixture import data_config
        from lft.models.loading import load_tokenizer
        from lft.tasks import build_task

        if self.sets or stage != "fit":
            return
        tokenizer = load_tokenizer(self.model_cfg)
        for name, settings in self.retention.items():
            try:
                prefix = f"forgetting.retention.{name}"  # names the set's keys in length messages
                task = build_task(data_config(str(name), settings), self.model_cfg, prefix=prefix)
                encoded = task.encode(tokenizer, self.seed, cache_dir=self.cache_dir)
            except (ConfigError, OSError) as err:
                raise ConfigError(f"forgetting.retention.{name} does not load: {err}") from None
            self.sets[str(name)] = (task, encoded)

    def on_fit_start(self, trainer, pl_module) -> None:
        if not self.before:  # a resumed run keeps the scores from before its first step (see state_dict)
            self.before = self.score(trainer, pl_module)
            log.info("Retention before training: %s", self.before)

    def on_fit_end(self, trainer, pl_module) -> None:
        after = self.score(trainer, pl_module)
        self.report = {name: {metric: change(self.before.get(name, {}).get(metric), value)
                              for metric, value in scores.items()} for name, scores in after.items()}
        flat = {f"forgetting/{name}/{metric}_{key}": value for name, scores in self.report.items()
                for metric, entry in scores.items() for key, value in entry.items()}
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in flat.items()})
        for logger in trainer.loggers:
            logger.log_metrics(flat, step=trainer.global_step)
        if trainer.is_global_zero and self.output_dir is not None:
            (self.output_dir / FORGETTING).write_text(json.dumps(self.report, indent=2))
        log.info("Retention (before -> after): %s", {n: {m: (e["before"], e["after"]) for m, e in s.items()}
                                                     for n, s in self.report.items()})

    def check_run(self) -> None:
        """Called by train() once the run folder is complete: fail past max_perplexity_increase."""
        if self.max_increase is None:
            return
        for name, scores in self.report.items():
            entry = scores.get("perplexity")
            if entry and entry["before"] > 0 and entry["after"] > entry["before"] * (1 + self.max_increase):
                raise ForgettingExceeded(
                    f"Forgetting: perplexity on retention set {name!r} rose from {entry['before']:.3f} to "
                    f"{entry['after']:.3f} (+{100 * (entry['after'] / entry['before'] - 1):.1f}%), past "
                    f"forgetting.max_perplexity_increase={self.max_increase}. The run folder holds the weights "
                    "and forgetting.json; try a lower lr, fewer steps, LoRA, or replay (a data.mixture with general text).")

    @torch.no_grad()
    def score(self, trainer, pl_module) -> dict[str, dict[str, float]]:
        """Each set's test metrics on the current weights, in the trainer's precision."""
        model, was_training = pl_module.model, pl_module.model.training
        model.eval()
        out = {}
        try:
            for name, (task, encoded) in self.sets.items():
                metrics = task.metrics(encoded).to(pl_module.device)
                for batch in encoded.datamodule.test_dataloader():
                    batch = {k: v.to(pl_module.device) if torch.is_tensor(v) else v for k, v in batch.items()}
                    with trainer.precision_plugin.forward_context():
                        task.evaluate(model, batch, metrics, encoded)
                out[name] = {k: float(v) for k, v in metrics.compute().items()}
                task.take_samples(encoded)  # the retention set's generations are not the run's samples
        finally:
            model.train(was_training)
        return out

    def state_dict(self) -> dict:
        return {"before": self.before}

    def load_state_dict(self, state: dict) -> None:
        self.before = state.get("before", {})


def change(before: float | None, after: float) -> dict[str, float]:
    if before is None or not math.isfinite(before):
        return {"before": math.nan if before is None else before, "after": after, "change": math.nan}
    return {"before": before, "after": after, "change": after - before}
