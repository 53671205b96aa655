"""Dropout with a cheaper random mask on the CPU: the same distribution, other draws.

ATen's CPU dropout draws one Bernoulli sample per element (12-17 ns each here). Attention dropout draws one per
attention probability, batch x heads x length x length, and so forces SDPA onto its math kernel: a MiniLM LoRA
step (16 x 256 tokens) spent 22% of its time in `bernoulli_`. Here one 64-bit draw makes four 16-bit lanes, and
each lane compared with a threshold is one keep decision. The keep probability is 1 - p rounded to 1/65536, and
kept values are scaled by its inverse, so the expectation is exact. On other devices ATen's dropout runs (CUDA
kernels fuse it). Masks come from torch's generator: a seed reproduces them.

Attention dropout computes what `F.scaled_dot_product_attention` computes when the model calls it with dropout
on the CPU (its math kernel: autocast casts the inputs, then every step runs in fp32), with a mask from
`drop_mask`: for the same mask and scale, bitwise the same output and gradients, in fp32 and under autocast.
"""

import math

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

_LANES = 65536  # a 16-bit lane


def drop_mask(shape: torch.Size, p: float, device: torch.device) -> tuple[torch.Tensor, float]:
    """A boolean mask dropping each element with probability p (to 1/65536), and the scale that keeps expectations."""
    numel = torch.Size(shape).numel()
    threshold = round(p * _LANES)  # lanes below it drop
    words = torch.empty((numel + 3) // 4, dtype=torch.int64, device=device).random_(-(2**63), None)  # all 64 bits
    lanes = words.view(torch.int16)[:numel].view(shape)
    return lanes < threshold - _LANES // 2, _LANES / (_LANES - threshold)


def dropped(x: torch.Tensor, p: float, lanes: bool | None = None) -> tuple[torch.Tensor, torch.Tensor, float]:
    """`x` after dropout (p < 1), the boolean mask of dropped elements and the scale of kept ones. Masks come from
    `drop_mask`'s lanes (lanes=True, the default on the CPU) or from fp32 uniform draws (the default elsewhere,
    where ATen's own draws are cheap and the lanes' int64 words buy nothing)."""
    if lanes is None:
        lanes = x.device.type == "cpu"
    if lanes:
        drop, scale = drop_mask(x.shape, p, x.device)
    else:
        drop, scale = torch.rand(x.shape, device=x.device) < p, 1 / (1 - p)
    return apply_drop(x, drop, scale), drop, scale


def apply_drop(x: torch.Tensor, drop: torch.Tensor, scale: float) -> torch.Tensor:
    """Dropout's arithmetic for a given mask: its output from the input, its backward from the gradient. Bitwise
    ATen's `x * noise` (noise: 0 where dropped, else `scale` in x's dtype), keeping a one-byte mask, not the noise."""
    return MaskedScale.apply(x, drop, scale)


class MaskedScale(torch.autograd.Function):
    """`(x * scale).masked_fill_(drop, 0)`, and the same for the gradient: one pass fewer in backward than autograd's
    masked_fill then mul."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, drop: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(drop)
        ctx.scale = scale
        return (x * scale).masked_fill_(drop, 0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (drop,) = ctx.saved_tensors
        return (grad * ctx.scale).masked_fill_(drop, 0), None, None


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """F.dropout; on the CPU with a mask from `drop_mask`, kept (one byte an element) for backward."""
    if not training or p == 0:
        return x
    if x.device.type != "cpu" or p >= 1 or not x.is_floating_point():
        return F.dropout(x, p, training)
    return dropped(x, p)[0]


def attention(module, query, key, value, attention_mask, dropout: float, scaling=None, is_causal=None, **_):
    """transformers' SDPA attention in training on the CPU, with attention dropout from `drop_mask`."""
    drop, scale = drop_mask(torch.Size([*query.shape[:-1], key.shape[-2]]), dropout, query.device)
    return attention_with_mask(module, query, key, value, attention_mask, drop, scale, scaling, is_causal)


def attention_with_mask(module, query, key, value, attention_mask, drop, scale, scaling=None, is_causal=None):
    """transformers' SDPA attention with dropout's mask given (`drop`: dropped probabilities, `scale`: the kept
    ones' factor): step by step what `F.scaled_dot_product_attention` computes with dropout on the CPU."""
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = query.shape[2] > 1 and attention_mask is None and causal  # as transformers decides it for SDPA
    device = query.device.type
    dtype = query.dtype
    if torch.is_autocast_enabled(device) and query.is_floating_point():  # autocast casts SDPA's inputs
        dtype = torch.get_autocast_dtype(device)
        query, key, value = query.to(dtype), key.to(dtype), value.to(dtype)
        if attention_mask is not None and attention_mask.is_floating_point():
            attention_mask = attention_mask.to(dtype)
    if attention_mask is not None and attention_mask.dtype == torch.bool:  # SDPA's conversion
        attention_mask = torch.zeros(attention_mask.shape, device=query.device).masked_fill_(~attention_mask,
                                                                                              -math.inf)
    with torch.autocast(device, enabled=False):  # SDPA's math kernel runs each step in fp32, autocast or not
        if dtype in (torch.float16, torch.bfloat16):
            query, key, value = query.float(), key.float(), value.float()
        groups = query.shape[1] // key.shape[1]  # grouped-query attention: each key/value head serves `groups`
        if groups > 1:
            key, value = key.repeat_interleave(groups, -3), value.repeat_interleave(groups, -3)
        root = math.sqrt(scaling if scaling is not None else 1 / math.sqrt(query.shape[-1]))  # on both sides
        scores = (query * root) @ (key.transpose(-2, -1) * root)
        if causal:
            attention_mask = torch.full(scores.shape[-2:], -math.inf, device=scores.device).triu(1)
        if attention_mask is not None:
            scores.add_(attention_mask)
        # SDPA's softmax gives zeros for a query with no key to attend to; for every other row it is softmax,
        # bitwise, at half the cost
        empty_rows = attention_mask is not None and bool(attention_mask.isneginf().all(-1).any())
        probs = torch._safe_softmax(scores, -1) if empty_rows else scores.softmax(-1)
        out = apply_drop(probs, drop, scale) @ value
    return out.to(dtype).transpose(1, 2).contiguous(), None


def drops_fast(module: nn.Module) -> bool:
    """Whether `module` is an attention whose dropout use_fast_dropout swapped (the model opted in)."""
    return any(isinstance(child, FastDropout) for child in module.children())


class FastDropout(nn.Dropout):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


def use_fast_dropout(model: nn.Module) -> int:
    """Swap every plain `nn.Dropout` inside `model` for FastDropout (same p); returns how many."""
    swaps = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
             if type(child) is nn.Dropout]
    for parent, name, child in swaps:
        setattr(parent, name, FastDropout(child.p, child.inplace))
    return len(swaps)
