"""A model's repeated transformer blocks: what FSDP wraps, compile compiles, freeze and distillation count."""

from torch import nn

from lft.config.errors import ConfigError


def block_names(model) -> set[str]:
    """Class names of the model's repeated blocks (its `_no_split_modules`, e.g. LlamaDecoderLayer, BertLayer)."""
    return {name for sub in model.modules() for name in (getattr(sub, "_no_split_modules", None) or [])}


def transformer_blocks(model) -> list:
    """The model's repeated blocks, in order."""
    names = block_names(model)
    return [m for m in model.modules() if type(m).__name__ in names]


def block_list(model) -> tuple[str, nn.ModuleList]:
    """The list that holds the blocks (encoder.layer, layers, h, block): of the lists of blocks the longest,
    or, for a model that names no block class, the longest list of modules."""
    names = block_names(model)
    lists = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    of_blocks = [(name, m) for name, m in lists if type(m[0]).__name__ in names]
    if not lists:
        raise ConfigError(f"found no layer list in {type(model).__name__}: freeze and distillation need one.")
    return max(of_blocks or lists, key=lambda item: len(item[1]))
