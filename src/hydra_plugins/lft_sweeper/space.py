"""The search space: config keys mapped to distributions, checked in full before any trial runs.

    optimizer.lr:       {type: float, low: 1.0e-5, high: 3.0e-3, log: true}
    strategy.r:         {type: int, low: 4, high: 32, step: 4}       # step or log, not both
    data.batch_size:    {type: categorical, choices: [8, 16, 32]}
    strategy.target_modules: {type: categorical, choices: [[query, value], [query, key, value]]}

Keys may also nest (`optimizer: {lr: {type: ...}}`), which is what a command-line
`+hydra.sweeper.params.optimizer.lr={type:float,low:1e-5,high:1e-3}` makes (it replaces the file's
`optimizer.lr` entry). A key starting with `+` adds a key
the config lacks; any other key must exist in the composed config.
"""

import math
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from lft.config.errors import ConfigError

TYPES = ("float", "int", "categorical")
PRIMITIVE = (type(None), bool, int, float, str)


@dataclass(frozen=True)
class Param:
    key: str  # the config key, as written in the override (may start with +)
    type: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple = ()

    def suggest(self, trial) -> Any:
        """The trial's value; categorical lists (e.g. target_modules) are suggested by their label."""
        if self.type == "float":
            return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)
        if self.type == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        if all(isinstance(c, PRIMITIVE) for c in self.choices):
            return trial.suggest_categorical(self.key, list(self.choices))
        # Optuna stores only None/bool/int/float/str choices: suggest a list's override text instead.
        labels = [override_value(c) for c in self.choices]
        return self.choices[labels.index(trial.suggest_categorical(self.key, labels))]

    def override(self, value: Any) -> str:
        return f"{self.key}={override_value(value)}"


def parse_space(params, config: DictConfig | None = None) -> list[Param]:
    """Every entry checked at once; a bad one is a ConfigError naming the key and what to write instead."""
    if params is None or len(params) == 0:
        raise ConfigError("hydra.sweeper.params is empty: give the search space, e.g. "
                          "optimizer.lr: {type: float, low: 1.0e-5, high: 3.0e-3, log: true} (see docs/search.md).")
    if isinstance(params, DictConfig):
        params = OmegaConf.to_container(params, resolve=True)
    # A nested entry written later (on the command line) replaces a flat one of the same key from the file.
    space = [parse_param(key, spec) for key, spec in dict(flatten(params)).items()]
    if config is not None:
        for param in space:
            if not param.key.startswith("+") and OmegaConf.select(config, param.key, default=_MISSING) is _MISSING:
                raise ConfigError(f"hydra.sweeper.params: {param.key} is not a key of this config (a group option "
                                  "may lack it, e.g. strategy.r needs strategy=lora); fix the key, pick the group "
                                  f"that has it, or write +{param.key} to add it.")
    return space


_MISSING = object()


def flatten(params: dict, prefix: str = ""):
    for key, spec in params.items():
        if isinstance(spec, dict) and "type" not in spec and spec:
            yield from flatten(spec, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", spec


def parse_param(key: str, spec) -> Param:
    where = f"hydra.sweeper.params.{key}"
    if not isinstance(spec, dict) or spec.get("type") not in TYPES:
        raise ConfigError(f"{where}={spec!r}: give a mapping with type: {' | '.join(TYPES)}, e.g. "
                          "{type: float, low: 1.0e-5, high: 1.0e-3, log: true} or {type: categorical, choices: [4, 8]}.")
    kind = spec["type"]
    allowed = {"type", "choices"} if kind == "categorical" else {"type", "low", "high", "step", "log"}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {unknown} for type {kind}; allowed: {sorted(allowed)}.")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: categorical needs a non-empty list of choices, e.g. choices: [4, 8, 16].")
        return Param(key, kind, choices=tuple(_freeze(c) for c in choices))
    low, high, step, log = spec.get("low"), spec.get("high"), spec.get("step"), bool(spec.get("log", False))
    for name, value in (("low", low), ("high", high), ("step", step)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            raise ConfigError(f"{where}: {name}={value!r} is not a finite number.")
    if low is None or high is None:
        raise ConfigError(f"{where}: {kind} needs low and high.")
    if kind == "int" and not all(float(v).is_integer() for v in (low, high, step or 1)):
        raise ConfigError(f"{where}: int needs whole low/high/step (got {low}, {high}, {step}); use type: float.")
    if low > high:
        raise ConfigError(f"{where}: low={low} is above high={high}.")
    if log and low <= 0:
        raise ConfigError(f"{where}: log: true needs low > 0 (got {low}).")
    if log and step is not None:
        raise ConfigError(f"{where}: step and log: true cannot be combined (Optuna samples one or the other).")
    if step is not None and step <= 0:
        raise ConfigError(f"{where}: step={step} must be above 0.")
    return Param(key, kind, low=low, high=high, step=step, log=log)


def _freeze(choice):
    return tuple(_freeze(c) for c in choice) if isinstance(choice, (list, tuple, ListConfig)) else choice


def override_value(value) -> str:
    """A value as Hydra's override grammar reads it back: null, true, [a,b], 1e-05."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    return str(value)
