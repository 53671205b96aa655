"""Decoder blocks that keep less for backward, with the stock numbers (lft/speed/contract.py says how exactly).

SwiGLU MLP: Llama-family MLPs compute `down(silu(gate(x)) * up(x))`. Autograd keeps `gate(x)` for SiLU's
backward and both factors of the product for the multiplication's: three tensors of the MLP's width (1,536 for
SmolLM2-135M) per token per layer, the largest share of a LoRA step's activations. `silu(gate)` is cheap to recompute from
`gate`, so `SwiGLU` keeps only `gate` and `up`; its backward runs the ATen kernels autograd would have run, in
the same order, so gradients are bitwise the same.

One attention mask per forward: transformers gives SDPA a boolean mask and SDPA converts it to an additive one in
the query's dtype at every layer, each layer keeping its own copy for backward (SmolLM2, 8 x 448 tokens: 3.2 MB
per layer; it grows with the square of the length). Converting it once per forward, the way SDPA does (in the
autocast dtype under autocast, as SDPA would cast it), gives all layers the same tensor: bitwise the same.

Grouped-query attention on the CPU: with a padding mask, transformers repeats each key/value head for every query
head it serves before SDPA (its GQA path is for mask-free CUDA kernels), and SDPA keeps the repeated copies for
backward: SmolLM2 (9 query, 3 key/value heads) keeps 3x the key and value bytes. PyTorch's CPU kernels take the
mask with `enable_gqa`: the same loss, gradients to rounding (the heads sharing a key/value head are summed in
another order). On a GPU, where masked SDPA with enable_gqa would fall back to its math kernel, transformers'
own path runs.

lft's attention is registered with transformers under its own name, LEAN_ATTENTION, and set on the models lft
loads (model.set_attn_implementation), only those whose class the contract lists: transformers' "sdpa" and every
other model in the process are untouched, and nothing is set in the environment.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from lft.speed import dropout_masks
from lft.speed.contract import applies, mark

LEAN_ATTENTION = "lft_sdpa"  # contains "sdpa": transformers checks a model supports SDPA before taking it


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


def lean_mask(*args, dtype: torch.dtype = torch.float32, **kwargs) -> torch.Tensor | None:
    """SDPA's boolean mask, converted once per forward the way SDPA converts it (0 where attended, -inf elsewhere),
    in the autocast dtype under autocast (SDPA would cast an fp32 mask down again in every layer). transformers
    builds it once per forward, outside the blocks: no tensor outlives the forward, and compiled blocks read no
    global (a module-level cache here broke torch.compile's guards once its tensor was collected)."""
    mask = sdpa_mask(*args, **kwargs)
    if mask is None or mask.dtype != torch.bool:
        return mask
    device = mask.device.type
    if torch.is_autocast_enabled(device):
        dtype = torch.get_autocast_dtype(device)
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))


def _plain(kwargs: dict) -> bool:
    """No position bias (T5), paged cache or softcapping: what the step-by-step paths below compute."""
    return not any(kwargs.get(k) is not None for k in ("position_bias", "cache", "softcap"))


def _sdpa_gqa(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **_):
    """transformers' sdpa_attention_forward with its GQA switch on, for a forward without cached keys: SDPA reads
    each key/value head for the query heads it serves instead of repeated copies."""
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = query.shape[2] > 1 and attention_mask is None and causal  # as transformers decides it
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=dropout,
                                         scale=scaling, is_causal=causal, enable_gqa=True)
    return out.transpose(1, 2).contiguous(), None


def lean_attention(module, query, key, value, attention_mask, **kwargs):
    """transformers' SDPA attention (its mask converted once per forward by lean_mask); on the CPU, grouped-query
    attention without repeated key/value heads, and attention dropout from cheaper masks where the model's
    dropouts are fast_dropout's."""
    on_cpu = query.device.type == "cpu"
    if kwargs.get("dropout", 0) > 0 and on_cpu and dropout_masks.drops_fast(module) and _plain(kwargs):
        return dropout_masks.attention(module, query, key, value, attention_mask, **kwargs)
    if (on_cpu and getattr(module, "num_key_value_groups", 1) > 1 and query.shape[2] == key.shape[2] > 1
            and _plain(kwargs) and not kwargs.get("output_attentions")):
        return _sdpa_gqa(module, query, key, value, attention_mask, **kwargs)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


# A new name beside transformers' own; its masks are SDPA's, converted once per forward.
AttentionInterface.register(LEAN_ATTENTION, lean_attention)
AttentionMaskInterface.register(LEAN_ATTENTION, lean_mask)


def _grouped_heads(model: nn.Module) -> bool:
    config = model.config
    heads, kv_heads = getattr(config, "num_attention_heads", None), getattr(config, "num_key_value_heads", None)
    return bool(heads and kv_heads and kv_heads < heads)


def use_lean_blocks(model: nn.Module) -> int:
    """Lean attention and SwiGLU MLPs on `model`, where the contract lists its class (returns the number of MLPs
    swapped). Only this model changes."""
    grouped = _grouped_heads(model)  # lean attention runs grouped heads unrepeated: both paths must apply
    if (getattr(model.config, "_attn_implementation", None) == "sdpa" and applies("one_mask_attention", model)
            and (not grouped or applies("gqa_without_repeats", model))):
        model.set_attn_implementation(LEAN_ATTENTION)
        if model.config._attn_implementation == LEAN_ATTENTION:  # transformers declines for some model classes
            mark(model, "one_mask_attention")
            if grouped:
                mark(model, "gqa_without_repeats")
    mlps = [m for m in model.modules() if _is_swiglu_mlp(m)]
    if mlps and applies("lean_swiglu", model):
        for module in mlps:
            module.forward = _lean_forward.__get__(module)
        mark(model, "lean_swiglu")
        return len(mlps)
    return 0


def stock_blocks(model: nn.Module) -> None:
    """Undo use_lean_blocks on `model` (a peft model's base included): transformers' SDPA and MLP forwards."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base.config, "_attn_implementation", None) == LEAN_ATTENTION:
        base.set_attn_implementation("sdpa")
    for module in base.modules():
        if getattr(module.__dict__.get("forward"), "__func__", None) is _lean_forward:
            del module.forward


@contextmanager
def stock_blocks_within(model: nn.Module) -> Iterator[None]:
    """transformers' SDPA and MLP forwards inside the block, lft's again after it."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    attention = getattr(base.config, "_attn_implementation", None)
    lean = {m: m.__dict__["forward"] for m in base.modules()
            if getattr(m.__dict__.get("forward"), "__func__", None) is _lean_forward}
    stock_blocks(base)
    try:
        yield
    finally:
        if attention == LEAN_ATTENTION:
            base.set_attn_implementation(LEAN_ATTENTION)
        for module, forward in lean.items():
            module.forward = forward
