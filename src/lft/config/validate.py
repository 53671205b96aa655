"""Checks of a composed config that need no data or weights: they run before anything is loaded."""

from functools import cache

import torch

from lft.config.errors import ConfigError
from lft.config.schema import check_schema
from lft.data.augment import check_augment
from lft.training.engines import check_engine
from lft.training.finders import check_tune
from lft.training.schedulers import lr_lambda

GPU_ONLY_PRECISION = ("16-mixed", "16-true")
GENERATED_METRICS = ("rouge1", "rouge2", "rougeL", "rougeLsum", "bleu")


def check_config(cfg) -> None:
    check_schema(cfg)  # unknown keys, wrong types and out-of-range values first: the checks below rely on types
    check_engine(cfg)
    lr_lambda(cfg.scheduler, total_steps=1)  # unknown names or both warmups fail here
    precision = str(cfg.trainer.precision)
    if precision in GPU_ONLY_PRECISION and not torch.cuda.is_available():
        raise ConfigError(f"precision={precision}: fp16 needs a CUDA GPU; on CPU use precision=bf16 or precision=fp32.")
    if cfg.trainer.get("accelerator") == "gpu" and not torch.cuda.is_available():
        raise ConfigError("trainer.accelerator=gpu but no CUDA GPU is visible; use trainer=cpu or trainer.accelerator=auto.")
    if cfg.strategy.name == "distill" and cfg.data.get("task") in ("dpo", "reward"):
        raise ConfigError(f"strategy=distill with data.task={cfg.data.task}: distillation follows a teacher's "
                          "outputs per example, not preference pairs; use strategy=lora, qlora, full or freeze.")
    gen = cfg.data.get("generate") or {}
    if str(cfg.monitor.metric).removeprefix("val/") in GENERATED_METRICS and gen and not gen.get("val_samples"):
        raise ConfigError(f"monitor.metric={cfg.monitor.metric} is scored on generated text, but "
                          "data.generate.val_samples=0 generates none in validation; set data.generate.val_samples "
                          "above 0, or follow the loss: data.monitor.metric=val/loss data.monitor.mode=min.")
    if cfg.data.get("packing") and cfg.strategy.name in ("prefix_tuning", "prompt_tuning"):
        raise ConfigError(f"data.packing=true with strategy={cfg.strategy.name}: the virtual tokens it adds would be "
                          "shared by every packed document; set data.packing=false.")
    check_quantization(cfg)
    check_augment(cfg.get("augment"), cfg.data.get("task"))
    check_tune(cfg)


def check_quantization(cfg) -> None:
    """k-bit loading needs a peft strategy (quantized weights cannot train) and a working bitsandbytes."""
    from lft.strategies import PEFT_STRATEGIES

    q = cfg.model.get("quantization")
    if not q:
        return
    if cfg.strategy.name not in PEFT_STRATEGIES:
        raise ConfigError(
            f"model.quantization (bits={q.get('bits')}) with strategy={cfg.strategy.name}: k-bit weights cannot be "
            f"trained directly; use a peft strategy ({', '.join(sorted(PEFT_STRATEGIES))}) or set model.quantization=null."
        )
    problem = bitsandbytes_problem(int(q.get("bits") or 0))
    if problem:
        raise ConfigError(
            f"model.quantization.bits={q.get('bits')}: bitsandbytes cannot run on this machine ({problem}). "
            "Install a bitsandbytes build for this platform (>=0.48 runs on CPU too), or train without "
            "quantization: strategy=lora instead of qlora/lora_8bit."
        )


@cache
def bitsandbytes_problem(bits: int) -> str | None:
    """None when a tiny k-bit layer runs forward and backward here; else what went wrong."""
    try:
        import bitsandbytes as bnb

        layer = bnb.nn.Linear4bit(64, 64, compute_dtype=torch.float32) if bits == 4 else \
            bnb.nn.Linear8bitLt(64, 64, has_fp16_weights=False)
        layer = layer.to("cuda" if torch.cuda.is_available() else "cpu")  # quantizes the weights
        x = torch.randn(2, 64, device=layer.weight.device, requires_grad=True)
        layer(x).float().sum().backward()
    except Exception as err:  # any import, backend or kernel failure means the same to the user
        return f"{type(err).__name__}: {err}".strip()[:300]
    return None
