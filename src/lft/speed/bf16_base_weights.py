"""Adapter training under bf16 autocast keeps the frozen base's linear weights in bf16, once, for the fit.

Autocast casts every fp32 weight a linear layer reads to bf16 at each step and keeps the copies until the step
ends: half the base's size again, on top of the fp32 weights (for a checkpoint loaded from safetensors, pages of
a file mapping). Frozen weights never change, so casting them once gives autocast's very numbers without the
per-step copies; the other parameters are copied out of the file mapping so it is released. SmolLM2-135M: 0.5 GB
of file pages and 0.27 GB of per-step casts become 0.27 GB of bf16 weights and the 0.11 GB fp32 embedding.

Embeddings and norms stay fp32 (a lookup returns its weight's dtype; norms are not autocast). At the end of the
fit the weights go back to fp32 (the bf16 values, exactly), so whatever runs the model afterwards sees the
dtypes it had; only adapters are saved, so the run's saved weights are unchanged. Models whose class
lft/speed/contract.py does not list keep fp32 weights (autocast casts them at every step).
"""

import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy
from torch import nn

from lft.models.loading import is_quantized
from lft.speed.contract import applies, mark


def frozen_linear_params(model: nn.Module) -> list[nn.Parameter]:
    """Frozen fp32 parameters read only by nn.Linear layers (tied embedding weights excluded), each once."""
    embedded = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    found: dict[int, nn.Parameter] = {}
    for module in model.modules():
        if isinstance(module, nn.Linear):
            for param in module.parameters(recurse=False):
                if (not param.requires_grad and param.dtype == torch.float32 and id(param) not in embedded
                        and type(param.data) is torch.Tensor):
                    found[id(param)] = param
    return list(found.values())


def reads_base_weights(model: nn.Module) -> bool:
    """DoRA computes its weight norm from the base weight outside autocast: it must stay fp32."""
    return any(getattr(m, "lora_magnitude_vector", None) for m in model.modules())


def cast_frozen_base(model: nn.Module) -> list[nn.Parameter]:
    """Cast `model`'s frozen linear weights to bf16 where the fidelity contract lists its class (returns them);
    the other parameters are copied off the checkpoint's file mapping, so it can be unmapped."""
    if is_quantized(model) or reads_base_weights(model) or not applies("bf16_base_weights", model):
        return []
    params = frozen_linear_params(model)
    for param in params:
        param.data = param.data.to(torch.bfloat16)
    cast = {id(p) for p in params}
    for param in model.parameters():
        if id(param) not in cast:
            param.data = param.data.clone()
    mark(model, "bf16_base_weights", on=bool(params))
    return params


def restore_fp32(model: nn.Module, params: list[nn.Parameter]) -> None:
    for param in params:
        param.data = param.data.float()
    mark(model, "bf16_base_weights", on=False)


class Bf16BaseWeights(Callback):
    def __init__(self):
        self.params: list[nn.Parameter] = []

    def on_fit_start(self, trainer, pl_module) -> None:
        if (trainer.precision == "bf16-mixed"
                and type(trainer.strategy) in (SingleDeviceStrategy, DDPStrategy)):  # sharded: its own dtypes
            self.params = cast_frozen_base(pl_module.model)

    def on_fit_end(self, trainer, pl_module) -> None:
        restore_fp32(pl_module.model, self.params)
        self.params = []
