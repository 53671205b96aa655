"""Dropout with a cheaper random mask on the CPU: the same distribution, other draws.

ATen's CPU dropout draws one Bernoulli sample per element (12-17 ns each here). Attention dropout draws one per
attention probability, batch x heads x length x length, and so forces SDPA onto its math kernel: a MiniLM LoRA
step (16 x 256 tokens) spent 22% of its time in `bernoulli_`. Here one 64-bit draw makes four 16-bit lanes, and
each lane compared with a threshold is one keep decision. The keep probability is 1 - p rounded to 1/65536, and
kept values are scaled by its inverse, so the expectation is exact. On other devices ATen's dropout runs (CUDA
kernels fuse it). Masks come from torch's generator: a seed reproduces them.

Attention dropout computes what SDPA's math kernel (the one SDPA picks on the CPU whenever dropout is on) computes,
step by step, with a mask from `drop_mask`: for the same mask, the same numbers.
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


def dropped(x: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    """`x` after dropout (p < 1), the boolean mask of dropped elements and the scale of kept ones; masks from
    `drop_mask` on the CPU, from fp32 uniform draws elsewhere."""
    if x.device.type == "cpu":
        drop, scale = drop_mask(x.shape, p, x.device)
    else:
        drop, scale = torch.rand(x.shape, device=x.device) < p, 1 / (1 - p)
    return apply_drop(x, drop, scale), drop, scale


def apply_drop(x: torch.Tensor, drop: torch.Tensor, scale: float) -> torch.Tensor:
    """Dropout's arithmetic for a given mask: its output from the input, its backward from the gradient."""
    return (x * scale).masked_fill_(drop, 0)


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """F.dropout; on the CPU with a mask from `drop_mask`, kept (one byte an element) for backward."""
    if not training or p == 0:
        return x
    if x.device.type != "cpu" or p >= 1 or not x.is_floating_point():
        return F.dropout(x, p, training)
    return dropped(x, p)[0]


def attention(module, query, key, value, attention_mask, dropout: float, scaling=None, is_causal=None, **_):
    """transformers' SDPA attention in training on the CPU, with attention dropout from `drop_mask`: step by step
    what SDPA's math kernel computes, so autocast treats each step the same way."""
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = query.shape[2] > 1 and attention_mask is None and causal  # as transformers decides it for SDPA
    dtype = query.dtype
    if dtype in (torch.float16, torch.bfloat16):
        query, key, value = query.float(), key.float(), value.float()
    groups = query.shape[1] // key.shape[1]  # grouped-query attention: each key/value head serves `groups`
    if groups > 1:
        key, value = key.repeat_interleave(groups, -3), value.repeat_interleave(groups, -3)
    root = math.sqrt(scaling if scaling is not None else query.shape[-1] ** -0.5)  # the scale's root on both sides
    scores = (query * root) @ (key.transpose(-2, -1) * root)
    if causal:
        attention_mask = torch.full(scores.shape[-2:], -math.inf, device=scores.device).triu(1)
    if attention_mask is not None:
        # The lowest float instead of -inf: a query with nothing to attend to (padding) averages instead of giving
        # NaN (SDPA gives it zeros); every other row is bitwise the same.
        scores.add_(attention_mask.clamp(min=torch.finfo(attention_mask.dtype).min))
    drop, scale = drop_mask(scores.shape, dropout, scores.device)
    out = scores.softmax(-1).masked_fill(drop, 0) @ (value * scale)  # scaling the values is cheaper, as SDPA does
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
