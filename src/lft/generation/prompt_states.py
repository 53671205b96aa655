"""Generation that starts from the loss forward's prompt states instead of a second prefill.

Evaluation runs the model over prompt + reference for the loss on every batch anyway. A prompt's keys and values
(decoders, causal attention) or its encoder states (encoder-decoders) do not depend on what follows it, so
generation can reuse them: the prefill over the same prompts was a third to a half of generation time
(bench/README.md).

Decoder batches are right-padded for the loss and left-padded for generation, so each row's first
prompt_length - 1 keys/values move to the right end of a new cache; generate then feeds only the last prompt
token. That needs generate to give each row its own positions (position_ids from the attention mask): the
reused keys sit at positions 0..n-2 of their row, not after the left padding. Whatever does not fit (a forward
without position_ids, sliding-window or other cache layers, virtual prompt tokens, no cache) gets the usual
prefill, and so does a model whose class lft/speed/contract.py does not list. The keys and values of a forward
over prompt + reference equal a prefill's to rounding (other matrix shapes), not bitwise.
"""

import inspect
from dataclasses import dataclass

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer
from transformers.modeling_outputs import BaseModelOutput

from lft.speed.contract import applies


@dataclass
class PromptStates:
    """What a forward over a (right-padded) batch of `width` positions computed: its cache or encoder states."""

    cache: object = None
    encoder: torch.Tensor | None = None
    width: int = 0

    @classmethod
    def of(cls, output, width: int) -> "PromptStates":
        encoder = getattr(output, "encoder_last_hidden_state", None)
        if encoder is not None:  # the decoder's cache there holds the reference, not the prompt
            return cls(encoder=encoder, width=width)
        return cls(cache=getattr(output, "past_key_values", None), width=width)

    def generate_kwargs(self, model, rows: list[int], lengths: list[int], dtype: torch.dtype | None) -> dict:
        """model.generate arguments that skip the prefill of these rows' prompts; {} where they cannot.

        dtype: the generating weights' dtype where it differs from the forward's (bf16 generation).
        Used once: the batch's own states are let go, so they are not held next to generation's copy.
        """
        encoder, cache, self.encoder, self.cache = self.encoder, self.cache, None, None
        if (encoder is None and cache is None) or not applies("prompt_states", model):
            return {}
        if encoder is not None:
            if encoder.shape[1] != self.width:  # virtual tokens (prompt tuning) shift the positions
                return {}
            states = encoder[rows, : max(lengths)]  # right-padded like generation's encoder input
            return {"encoder_outputs": BaseModelOutput(last_hidden_state=states.to(dtype or states.dtype))}
        if not positions_from_mask(model):
            return {}
        cache = left_aligned(cache, rows, lengths, self.width, dtype)
        return {"past_key_values": cache} if cache is not None else {}


def positions_from_mask(model) -> bool:
    """Whether generate passes position_ids (from the attention mask) to the model that generates."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft generates with the base
    return "position_ids" in inspect.signature(base.forward).parameters


def left_aligned(cache, rows: list[int], lengths: list[int], width: int, dtype) -> DynamicCache | None:
    """A cache of each row's prompt but its last token, right-aligned to max(lengths) - 1 positions."""
    if type(cache) is not DynamicCache or not all(
        type(layer) is DynamicLayer and layer.keys is not None and layer.keys.shape[-2] == width
        for layer in cache.layers
    ):
        return None
    span = max(lengths) - 1
    if span < 1:
        return None
    layers = []
    for layer in cache.layers:
        moved = []
        for states in (layer.keys, layer.values):
            _, heads, _, dim = states.shape
            out = states.new_zeros((len(rows), heads, span, dim), dtype=dtype or states.dtype)
            for i, (row, n) in enumerate(zip(rows, lengths, strict=True)):
                out[i, :, span - (n - 1):] = states[row, :, : n - 1]
            moved.append(out)
        layers.append(tuple(moved))
    return DynamicCache(ddp_cache_data=layers)
