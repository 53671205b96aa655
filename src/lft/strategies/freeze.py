"""Frozen layers: freeze the embeddings and the bottom N transformer layers, or all but the task head."""

from torch import nn

from lft.config.errors import ConfigError
from lft.models.blocks import block_list
from lft.strategies.params import set_trainable, under


def apply(model, cfg, task):
    heads = task.head_modules(model)
    if cfg.get("head_only"):
        if not heads:
            raise ConfigError(f"strategy.head_only: this {task.name} model has no separate head to train.")
        set_trainable(model, heads)
        return model, task
    layers_name, layers = block_list(model)
    n = cfg.get("freeze_bottom_layers") or 0
    if not 0 <= n <= len(layers):
        raise ConfigError(f"strategy.freeze_bottom_layers={n}: the model has {len(layers)} layers; use 0..{len(layers)}.")
    frozen = [f"{layers_name}.{i}" for i in range(n)]
    if cfg.freeze_embeddings:
        frozen += embedding_modules(model)
    for name, param in model.named_parameters():
        param.requires_grad_(not under(name, frozen))
    return model, task


def embedding_modules(model) -> list[str]:
    names = [name for name, m in model.named_modules() if isinstance(m, nn.Embedding)]
    # Prefer a whole `embeddings` block (word + position + LayerNorm) where the model has one.
    blocks = [name for name, _ in model.named_modules() if name.split(".")[-1] == "embeddings"]
    return blocks or names
