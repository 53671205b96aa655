"""Checks of a composed config that need no data or weights: they run before anything is loaded."""

import torch

from lft.errors import ConfigError
from lft.schedulers import lr_lambda

GPU_ONLY_PRECISION = ("16-mixed", "16-true")


def check_config(cfg) -> None:
    lr_lambda(cfg.scheduler, total_steps=1)  # unknown names or both warmups fail here
    precision = str(cfg.trainer.precision)
    if precision in GPU_ONLY_PRECISION and not torch.cuda.is_available():
        raise ConfigError(f"precision={precision}: fp16 needs a CUDA GPU; on CPU use precision=bf16 or precision=fp32.")
    if cfg.trainer.get("accelerator") == "gpu" and not torch.cuda.is_available():
        raise ConfigError("trainer.accelerator=gpu but no CUDA GPU is visible; use trainer=cpu or trainer.accelerator=auto.")
    if cfg.optimizer.get("lr", 1) <= 0:
        raise ConfigError(f"optimizer.lr={cfg.optimizer.lr} must be positive.")
    for key in ("batch_size", "eval_batch_size", "max_length", "max_source_length", "max_target_length", "block_size"):
        if cfg.data.get(key) is not None and cfg.data[key] <= 0:
            raise ConfigError(f"data.{key}={cfg.data[key]} must be positive.")
