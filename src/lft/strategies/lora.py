"""LoRA configs for peft (plain, rsLoRA, DoRA, k-bit): low-rank adapters on chosen linear layers.

The task head trains in full; peft_family.apply wraps the model with what lora_config builds.
"""

from peft import LoraConfig
from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_DEFAULTS
from torch import nn

from lft.config.errors import ConfigError

# Attention query/value projections per architecture; peft's table covers most, these fill its gaps.
EXTRA_DEFAULTS = {"distilbert": ["q_lin", "v_lin"]}


def default_target_modules(model) -> list[str]:
    model_type = model.config.model_type
    targets = EXTRA_DEFAULTS.get(model_type) or PEFT_DEFAULTS.get(model_type)
    if not targets:
        raise ConfigError(
            f"strategy.target_modules: no default for model type {model_type!r}; list module names, e.g. "
            f"strategy.target_modules=[{', '.join(linear_module_names(model)[:4])}]."
        )
    return list(targets)


def linear_module_names(model) -> list[str]:
    """Distinct leaf names of linear layers: what target_modules may name."""
    names = {name.split(".")[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    return sorted(names)


def check_target_modules(model, targets) -> None:
    if isinstance(targets, str):  # a regex or "all-linear": peft validates those itself
        return
    available = {name.split(".")[-1] for name, _ in model.named_modules()}
    missing = [t for t in targets if t not in available and not any(n.endswith(t) for n, _ in model.named_modules())]
    if missing:
        raise ConfigError(
            f"strategy.target_modules: {missing} not found in {type(model).__name__}; "
            f"linear layers it has: {', '.join(linear_module_names(model))}."
        )


def peft_common(cfg, task, model) -> dict:
    """Arguments every peft config shares: task type and the modules trained in full."""
    to_save = list(cfg.get("modules_to_save") or []) + task.head_modules(model)
    return {"task_type": task.peft_task_type, "modules_to_save": sorted(set(to_save)) or None}


def target_modules(model, cfg) -> list[str] | str:
    """strategy.target_modules, or the per-architecture default; checked against the model."""
    targets = cfg.get("target_modules")
    targets = default_target_modules(model) if targets is None else (targets if isinstance(targets, str) else list(targets))
    check_target_modules(model, targets)
    return targets


def lora_config(model, cfg, task) -> LoraConfig:
    bias = cfg.bias  # lora.yaml sets bias, use_rslora and use_dora; dora, qlora and lora_8bit extend it
    if bias not in ("none", "all", "lora_only"):
        raise ConfigError(f"strategy.bias={bias!r}: use none, all or lora_only.")
    return LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=target_modules(model, cfg),
        bias=bias,
        use_rslora=cfg.use_rslora,  # scale by alpha/sqrt(r), not alpha/r: stable at high ranks
        use_dora=cfg.use_dora,  # magnitude + direction decomposition (DoRA)
        **peft_common(cfg, task, model),
    )
