"""Strategies decide what trains. Each is a function `apply(model, cfg, task) -> (model, task)` (no class hierarchy).

Most return the task unchanged; distillation wraps it so the loss also follows a teacher. The config group
`conf/strategy/<file>.yaml` names the function by `name:`; several files share one function with different
settings (lora, dora, lora_8bit and qlora are all `name: lora`). A strategy that must act during training
contributes a Lightning callback through strategy_callbacks (AdaLoRA's rank budget).
"""

import logging

from peft import PeftModel
from torch import nn

from lft.config.errors import ConfigError
from lft.speed.bf16_base_weights import Bf16BaseWeights
from lft.strategies import distill, freeze, full, peft_family
from lft.strategies.adalora_budget import AdaLoraBudget, rank_allocator
from lft.strategies.params import count_parameters

log = logging.getLogger(__name__)

PEFT_STRATEGIES = set(peft_family.BUILDERS)
STRATEGIES = {"full": full.apply, "freeze": freeze.apply, "distill": distill.apply,
              **{name: peft_family.apply for name in PEFT_STRATEGIES}}


def strategy_callbacks(model: nn.Module) -> list:
    """Lightning callbacks a strategy needs during training, beside the run's own."""
    callbacks = [AdaLoraBudget()] if rank_allocator(model) is not None else []
    if isinstance(model, PeftModel):  # only adapters are saved, so the frozen base may compute in bf16
        callbacks.append(Bf16BaseWeights())
    return callbacks


def apply_strategy(model: nn.Module, cfg, task) -> tuple[nn.Module, object]:
    if cfg.name not in STRATEGIES:
        raise ConfigError(f"strategy.name={cfg.name!r} is unknown; choose one of {', '.join(sorted(STRATEGIES))}.")
    model, task = STRATEGIES[cfg.name](model, cfg, task)
    trainable, total = count_parameters(model)
    if trainable == 0:
        raise ConfigError(f"strategy={cfg.name}: no parameter is left trainable; check the strategy settings.")
    log.info("trainable params: %s || all params: %s || trainable%%: %.4f", f"{trainable:,}", f"{total:,}",
             100 * trainable / total)
    return model, task
