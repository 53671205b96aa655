"""Adapter dropout that keeps a one-byte mask for backward, in the dtype the adapter computes in.

peft puts an `nn.Dropout` before every LoRA adapter. On CPU, ATen's dropout multiplies by a float noise tensor
and keeps it for backward (4 bytes per input element), and under bf16 autocast the adapter's first matmul then
keeps its own bf16 copy of the dropped input (2 more). With `target_modules=all-linear` on SmolLM2 that is about
29 KB per token per layer, more than the rest of the block's activations together. `torch.native_dropout` keeps
a boolean mask instead, and casting to the autocast dtype first means the matmul's saved input is the dropout's
own output: 3 bytes per element. Same distribution (independent masks, scaled by 1/(1-p)), different draws.
"""

import torch
from torch import nn


class AdapterDropout(nn.Dropout):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        device = x.device.type
        if x.is_floating_point() and torch.is_autocast_enabled(device):
            x = x.to(torch.get_autocast_dtype(device))  # the cast autocast gives the adapter's matmul anyway
        if not self.training or self.p == 0:
            return x
        return torch.native_dropout(x, self.p, True)[0]


def use_adapter_dropout(model: nn.Module) -> int:
    """Swap peft's adapter dropouts (`lora_dropout` ModuleDicts) for AdapterDropout; returns how many."""
    swapped = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if isinstance(dropouts, nn.ModuleDict):
            for name, dropout in dropouts.items():
                if type(dropout) is nn.Dropout:
                    dropouts[name] = AdapterDropout(dropout.p)
                    swapped += 1
    return swapped
