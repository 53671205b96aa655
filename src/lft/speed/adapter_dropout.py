"""Adapter dropout that keeps a one-byte mask for backward, and plain LoRA's dropout and `lora_A` as one step.

peft puts an `nn.Dropout` before every LoRA adapter. On CPU, ATen's dropout multiplies by a float noise tensor
and keeps it for backward (4 bytes per input element); `AdapterDropout` keeps a boolean mask instead (1 byte).

Masks come from `dropout_masks.dropped`: 16-bit lanes of 64-bit draws on the CPU (p to 1/65536, the scale its
exact inverse), fp32 uniform draws elsewhere: the same distribution as ATen's, other draws. ATen's Bernoulli draws
took about 7 ms per adapter per step on SmolLM2 Alpaca (8 x 200 x 576), lanes 1.2 ms. Given the same mask and
scale, the arithmetic is peft's, in peft's order: drop and scale in the input's dtype, then autocast's cast to
bf16; so outputs and gradients are bitwise peft's (tested against peft's LoRA and DoRA layers).

Plain LoRA goes further: `lora_A(dropout(x))` becomes one step, `DroppingLoraA`, that keeps for backward the
mask packed to one bit per element and, under bf16 autocast, the bf16 dropped input the matmul reads; in fp32 the
input itself (the adapters reading one input, e.g. a layer's query and value, keep it once between them), from
which backward recomputes the dropped input with dropout's own arithmetic. peft keeps the float noise and, under
bf16 autocast, the matmul's bf16 copy of the dropped input per adapter: on SmolLM2-135M under bf16 autocast,
6.9 KB per token per layer become 2.4 KB with query/value adapters, 29.9 KB become 10.6 KB with all-linear (by
the byte count). Variants (DoRA, ...) and convolutions read the dropped input themselves and keep `AdapterDropout`.
"""

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from lft.speed.dropout_masks import apply_drop, dropped

BITS = 2 ** torch.arange(8, dtype=torch.uint8)


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a linear layer computes `x` in: autocast's where it is on (it leaves fp64 alone), else `x`'s."""
    device = x.device.type
    if x.is_floating_point() and x.dtype != torch.float64 and torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return x.dtype


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    flat = mask.reshape(-1)
    flat = F.pad(flat, (0, -flat.numel() % 8))
    return (flat.view(-1, 8).to(torch.uint8) * BITS.to(mask.device)).sum(1, dtype=torch.uint8)


def unpack_bits(bits: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    flat = (bits.unsqueeze(1) & BITS.to(bits.device)).ne(0).reshape(-1)
    return flat[:shape.numel()].view(shape)


class DroppedInputLinear(torch.autograd.Function):
    """`linear(dropout(x, p), weight)` keeping a 1-bit mask for backward, and either `x` (when the linear computes
    in its dtype: the adapters reading `x` share it) or the dropped input in the compute dtype (autocast's bf16:
    half the bytes of fp32 `x`)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, p: float) -> torch.Tensor:
        out, drop, scale = dropped(x, p)  # in x's dtype, as peft's nn.Dropout; then autocast's casts
        dtype = compute_dtype(x)
        out, w = out.to(dtype), weight.to(dtype)
        ctx.recompute = x.dtype == dtype
        ctx.scale, ctx.mask_shape, ctx.input_dtype, ctx.weight_dtype = scale, drop.shape, x.dtype, weight.dtype
        ctx.save_for_backward(x if ctx.recompute else out, pack_bits(drop), w)
        return F.linear(out, w)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        kept, bits, w = ctx.saved_tensors
        drop = unpack_bits(bits, ctx.mask_shape)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:  # the matmul's backward, the cast's, then dropout's
            grad_x = apply_drop(grad.matmul(w).to(ctx.input_dtype), drop, ctx.scale)
        if ctx.needs_input_grad[1]:
            out = apply_drop(kept, drop, ctx.scale) if ctx.recompute else kept  # the forward's dropped input
            grad_w = grad.reshape(-1, grad.shape[-1]).t().mm(out.reshape(-1, out.shape[-1]))  # as mm's backward
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
            return F.linear(dropped(x, self.p)[0], self.weight)
        return DroppedInputLinear.apply(x, self.weight, self.p)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, dropout={self.p}"


class AdapterDropout(nn.Dropout):
    """nn.Dropout keeping a one-byte mask. Its output stays in the input's dtype: DoRA computes its weight norm in
    the dtype of the dropped input, outside autocast, and would lose precision to an early bf16 cast."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
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
