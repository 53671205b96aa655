"""Strategies decide what trains. Each is a function `apply(model, cfg, task) -> model` (no class hierarchy).

The config group `conf/strategy/<file>.yaml` names the function by `name:`; several files can share one
function with different settings (e.g. the peft family).
"""

import logging

from torch import nn

from lft.errors import ConfigError
from lft.strategies import freeze, full, lora
from lft.strategies.params import count_parameters

log = logging.getLogger(__name__)

STRATEGIES = {"full": full.apply, "lora": lora.apply, "freeze": freeze.apply}


def apply_strategy(model: nn.Module, cfg, task) -> nn.Module:
    if cfg.name not in STRATEGIES:
        raise ConfigError(f"strategy.name={cfg.name!r} is unknown; choose one of {', '.join(STRATEGIES)}.")
    model = STRATEGIES[cfg.name](model, cfg, task)
    trainable, total = count_parameters(model)
    if trainable == 0:
        raise ConfigError(f"strategy={cfg.name}: no parameter is left trainable; check the strategy settings.")
    log.info("trainable params: %s || all params: %s || trainable%%: %.4f", f"{trainable:,}", f"{total:,}",
             100 * trainable / total)
    return model
