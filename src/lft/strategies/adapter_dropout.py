"""Adapter dropout that keeps a one-byte mask for backward, in the dtype the adapter computes in.

peft puts an `nn.Dropout` before every LoRA adapter. On CPU, ATen's dropout multiplies by a float noise tensor
and keeps it for backward (4 bytes per input element), and under bf16 autocast the adapter's first matmul then
keeps its own bf16 copy of the dropped input (2 more). With `target_modules=all-linear` on SmolLM2 that is about
29 KB per token per layer, more than the rest of the block's activations together. `torch.native_dropout` keeps
a boolean mask instead, and casting to the autocast dtype first means the matmul's saved input is the dropout's
own output: 3 bytes per element. Same distribution (independent masks, scaled by 1/(1-p)), different draws.

Masks come from `fast_dropout.dropped`: 16-bit lanes of 64-bit draws on the CPU (p to 1/65536, the scale its
exact inverse), fp32 uniform draws elsewhere. ATen's Bernoulli draws took about 7 ms per adapter per step on SmolLM2 Alpaca
(8 x 200 x 576), lanes 1.2 ms.

Plain LoRA goes further: `lora_A(dropout(x))` becomes one step, `DroppingLoraA`, that keeps for backward the
input itself (cast to the autocast dtype once per tensor, so the query and value adapters of a layer keep one
copy between them; each adapter's gradient still goes back in the input's dtype) and the mask packed to one bit
per element, and recomputes the dropped input in backward with dropout's own arithmetic: the same draws and
gradients as `AdapterDropout` then `lora_A`. SmolLM2-135M with query/value adapters: 3.4 KB per token per layer
become 1.3 KB. Variants (DoRA, ...) read the dropped input themselves and keep `AdapterDropout`.
"""

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.utils.weak import WeakTensorKeyDictionary

from lft.fast_dropout import apply_drop, dropped

BITS = 2 ** torch.arange(8, dtype=torch.uint8)
_casts = WeakTensorKeyDictionary()  # input -> its autocast copy, while the input lives


def autocast_input(x: torch.Tensor) -> torch.Tensor:
    """`x` in the autocast dtype (what the adapter's matmul would cast it to), one copy per tensor."""
    device = x.device.type
    if not (x.is_floating_point() and torch.is_autocast_enabled(device)):
        return x
    dtype = torch.get_autocast_dtype(device)
    if x.dtype == dtype:
        return x
    cast = _casts.get(x)
    if cast is None or cast.dtype != dtype:
        cast = _casts[x] = x.to(dtype)
    return cast


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    flat = mask.reshape(-1)
    flat = F.pad(flat, (0, -flat.numel() % 8))
    return (flat.view(-1, 8).to(torch.uint8) * BITS.to(mask.device)).sum(1, dtype=torch.uint8)


def unpack_bits(bits: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    flat = (bits.unsqueeze(1) & BITS.to(bits.device)).ne(0).reshape(-1)
    return flat[:shape.numel()].view(shape)


class DroppedInputLinear(torch.autograd.Function):
    """`linear(dropout(x, p), weight)` keeping `x` and a 1-bit mask for backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, p: float) -> torch.Tensor:
        cast = autocast_input(x)  # made here, without a graph: each adapter's gradient reaches `x` in its dtype
        out, drop, scale = dropped(cast, p)
        w = weight.to(cast.dtype)  # autocast's cast of the weight
        ctx.scale, ctx.mask_shape, ctx.input_dtype, ctx.weight_dtype = scale, drop.shape, x.dtype, weight.dtype
        ctx.save_for_backward(cast, pack_bits(drop), w)
        return F.linear(out, w)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        cast, bits, w = ctx.saved_tensors
        drop = unpack_bits(bits, ctx.mask_shape)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = apply_drop(grad.matmul(w), drop, ctx.scale).to(ctx.input_dtype)  # dropout's own backward
        if ctx.needs_input_grad[1]:
            out = apply_drop(cast, drop, ctx.scale)  # the forward's dropped input, recomputed
            grad_w = grad.reshape(-1, grad.shape[-1]).t().mm(out.reshape(-1, cast.shape[-1]))  # as mm's backward
            grad_w = grad_w.to(ctx.weight_dtype)
        return grad_x, grad_w, None


class DroppingLoraA(nn.Linear):
    """A LoRA `lora_A` that applies the adapter's dropout itself (peft's dropout becomes an identity)."""

    def __init__(self, lora_a: nn.Linear, p: float):
        super().__init__(lora_a.in_features, lora_a.out_features, bias=False, device="meta")
        self.weight = lora_a.weight
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return F.linear(x, self.weight)
        if not torch.is_grad_enabled():
            return F.linear(dropped(autocast_input(x), self.p)[0], self.weight)
        return DroppedInputLinear.apply(x, self.weight, self.p)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, dropout={self.p}"


class AdapterDropout(nn.Dropout):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        device = x.device.type
        if x.is_floating_point() and torch.is_autocast_enabled(device):
            x = x.to(torch.get_autocast_dtype(device))  # the cast autocast gives the adapter's matmul anyway
        if not self.training or self.p == 0:
            return x
        return dropped(x, self.p)[0]


def use_adapter_dropout(model: nn.Module) -> int:
    """Swap peft's adapter dropouts (`lora_dropout` ModuleDicts): plain LoRA's into DroppingLoraA, the rest for
    AdapterDropout; returns how many."""
    swapped = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if isinstance(dropouts, nn.ModuleDict):
            lora_a = getattr(module, "lora_A", {})
            for name, dropout in dropouts.items():
                if type(dropout) is not nn.Dropout:
                    continue
                plain = name in lora_a and name not in getattr(module, "lora_variant", {})
                if plain and type(lora_a[name]) is nn.Linear:
                    lora_a[name] = DroppingLoraA(lora_a[name], dropout.p)
                    dropouts[name] = nn.Identity()
                else:
                    dropouts[name] = AdapterDropout(dropout.p)
                swapped += 1
    return swapped
