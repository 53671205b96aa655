"""Counting and selecting trainable parameters."""

from torch import nn


def count_parameters(model: nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def under(name: str, prefixes: list[str]) -> bool:
    """True when parameter `name` lies inside one of the modules named in `prefixes`."""
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def set_trainable(model: nn.Module, trainable_modules: list[str]) -> None:
    """requires_grad only for parameters inside the given modules (torchtune's pattern)."""
    for name, param in model.named_parameters():
        param.requires_grad_(under(name, trainable_modules))
