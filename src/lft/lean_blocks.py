"""Decoder blocks that keep less for backward, with the same numbers.

SwiGLU MLP: Llama-family MLPs compute `down(silu(gate(x)) * up(x))`. Autograd keeps `gate(x)` for SiLU's
backward and both factors of the product for the multiplication's: three tensors of the MLP's width (1,536 for
SmolLM2-135M) per token per layer, the largest share of a LoRA step's activations. `silu(gate)` is cheap to recompute from
`gate`, so `SwiGLU` keeps only `gate` and `up`; its backward runs the ATen kernels autograd would have run, in
the same order, so gradients are bitwise the same.

Grouped-query attention on the CPU: with a padding mask, transformers repeats each key/value head for every query
head it serves before SDPA (its GQA path is for mask-free CUDA kernels), and SDPA keeps the repeated copies for
backward: SmolLM2 (9 query, 3 key/value heads) keeps 3x the key and value bytes. PyTorch's CPU flash kernel takes
the mask with `enable_gqa` and gives the same output; transformers' `TRANSFORMERS_SDPA_FORCE_GQA` turns it on.

One attention mask per forward: transformers gives SDPA a boolean mask and SDPA converts it to an additive one in
the query's dtype at every layer, each layer keeping its own copy for backward (SmolLM2, 8 x 448 tokens: 3.2 MB
per layer; it grows with the square of the length). Converting it once per forward, the way SDPA does (in the
autocast dtype under autocast, as SDPA would cast it), gives all layers the same tensor.
"""

import os
import weakref

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from lft import fast_dropout


class SwiGLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(gate, up)
        return F.silu(gate) * up

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        gate, up = ctx.saved_tensors
        grad_gate = grad_up = None
        if ctx.needs_input_grad[1]:
            grad_up = grad * F.silu(gate)
        if ctx.needs_input_grad[0]:
            grad_gate = torch.ops.aten.silu_backward(grad * up, gate)
        return grad_gate, grad_up


def _lean_forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.down_proj(SwiGLU.apply(self.gate_proj(x), self.up_proj(x)))


def _is_swiglu_mlp(module: nn.Module) -> bool:
    act = getattr(module, "act_fn", None)
    return (type(module).__name__.endswith("MLP") and all(hasattr(module, p) for p in ("gate_proj", "up_proj", "down_proj"))
            and type(act).__name__ in ("SiLU", "SiLUActivation"))


_last_mask: tuple = (lambda: None, None, None)  # (weak ref to a boolean mask, dtype, its additive form)


def _additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """SDPA's own conversion (0 where attended, -inf elsewhere), done once for the layers of one forward."""
    global _last_mask
    ref, cached_dtype, additive = _last_mask
    if ref() is not mask or cached_dtype != dtype:
        additive = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))
        _last_mask = (weakref.ref(mask), dtype, additive)
    return additive


def sdpa_one_mask(module, query, key, value, attention_mask, **kwargs):
    """transformers' SDPA attention, with a boolean mask converted once per forward instead of in every layer, and
    (CPU training of a model whose dropouts are fast_dropout's) attention dropout from cheaper masks."""
    if attention_mask is not None and attention_mask.dtype == torch.bool and query.is_floating_point():
        device = query.device.type  # under autocast, SDPA would cast an fp32 mask down again in every layer
        attention_mask = _additive(attention_mask, torch.get_autocast_dtype(device)
                                   if torch.is_autocast_enabled(device) else query.dtype)
    if (kwargs.get("dropout", 0) > 0 and query.device.type == "cpu" and fast_dropout.drops_fast(module)
            and not any(kwargs.get(k) is not None for k in ("position_bias", "cache", "softcap"))):
        return fast_dropout.attention(module, query, key, value, attention_mask, **kwargs)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def use_lean_blocks(model: nn.Module) -> int:
    """Route every Llama-style SiLU MLP of `model` through SwiGLU (returns how many); SDPA with one mask per forward
    (every model with `attn_implementation="sdpa"`); GQA without repeats on CPU."""
    AttentionInterface.register("sdpa", sdpa_one_mask)
    if not torch.cuda.is_available():  # CUDA's masked SDPA would fall back to its math kernel with enable_gqa
        os.environ.setdefault("TRANSFORMERS_SDPA_FORCE_GQA", "1")
    count = 0
    for module in model.modules():
        if _is_swiglu_mlp(module):
            module.forward = _lean_forward.__get__(module)
            count += 1
    return count
