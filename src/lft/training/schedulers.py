"""Learning-rate schedules as multipliers of the base rate, stepped once per optimizer step."""

import math
from collections.abc import Callable

from lft.config.errors import ConfigError

SCHEDULES = ("constant", "linear", "cosine", "step", "exponential")


def warmup_steps(cfg, total_steps: int) -> int:
    if cfg.get("warmup_steps", 0) and cfg.get("warmup_ratio", 0.0):
        raise ConfigError("scheduler: set only one of warmup_steps and warmup_ratio (the other to 0).")
    return int(cfg.get("warmup_steps", 0) or round(cfg.get("warmup_ratio", 0.0) * total_steps))


def lr_lambda(cfg, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the base learning rate at optimizer step `step`: linear warmup, then the decay shape."""
    name = cfg.name
    if name not in SCHEDULES:
        raise ConfigError(f"scheduler.name={name!r} is unknown; choose one of {', '.join(SCHEDULES)}.")
    warmup = warmup_steps(cfg, total_steps)
    decay_steps = max(1, total_steps - warmup)
    min_ratio = cfg.get("min_lr_ratio", 0.0)

    def multiplier(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        t = step - warmup  # steps since warmup ended
        progress = min(1.0, t / decay_steps)
        if name == "linear":
            return max(0.0, 1.0 - progress)
        if name == "cosine":
            return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        if name == "step":
            return cfg.gamma ** (t // cfg.step_size)
        if name == "exponential":
            return cfg.gamma**t
        return 1.0

    return multiplier
