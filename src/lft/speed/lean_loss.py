"""Next-token loss of a decoder LM that never holds the logits of the whole batch.

`model(**batch).loss` projects every position onto the vocabulary (SmolLM2: 49,152 floats per token) and keeps
those logits, their float copy and their gradient alive through backward: for 8 x 448 tokens that is over 2 GB,
most of it for prompt positions whose labels are -100. Here the backbone's hidden states are projected only at
positions that carry a label, a chunk at a time, and each chunk's logits are recomputed in backward instead
of stored. Same loss (mean over labelled tokens), same gradients.
"""

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from lft.data.labels import IGNORE
from lft.speed.contract import applies

CHUNK_TOKENS = 1024  # logits of one chunk: 1024 x 49,152 floats = 200 MB on SmolLM2


def lm_parts(model):
    """(backbone, output head) of a decoder LM (plain or LoRA-style peft), or None where the plain forward
    is needed: prompt/prefix tuning (peft adds virtual tokens in its own forward), or a model class the fidelity
    contract does not list for the lean loss (a logit multiplier or softcap, router losses: lft/speed/contract.py)."""
    base = model
    if hasattr(model, "peft_config"):
        if getattr(model, "active_peft_config", None) is not None and model.active_peft_config.is_prompt_learning:
            return None
        base = model.get_base_model()
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    backbone = getattr(base, "base_model", None)
    config = getattr(base, "config", None)
    if not isinstance(head, torch.nn.Linear) or backbone is None or backbone is base or config is None:
        return None
    if not applies("lean_loss", base):
        return None
    return backbone, head


def causal_lm_loss(model, inputs: dict) -> torch.Tensor:
    """Mean next-token cross-entropy over positions whose label is not -100 (what HF's loss computes)."""
    return causal_lm_forward(model, inputs)[0]


def causal_lm_forward(model, inputs: dict, use_cache: bool = False) -> tuple[torch.Tensor, object]:
    """(causal_lm_loss, the forward's key/value cache or None).

    use_cache: evaluation keeps the keys and values, so generation can start from the prompts' (lft.generation.prompt_states).
    Training never does: with a cache, transformers ignores packed documents' position ids.
    """
    parts = lm_parts(model)
    if parts is None:
        output = model(**inputs, use_cache=use_cache)
        return output.loss, output.past_key_values if use_cache else None
    backbone, head = parts
    labels = inputs["labels"]
    features = {k: v for k, v in inputs.items() if k != "labels"}
    output = backbone(**features, use_cache=use_cache)
    cache = output.past_key_values if use_cache else None
    targets = labels[:, 1:]
    keep = targets != IGNORE
    hidden, targets = output.last_hidden_state[:, :-1][keep], targets[keep]
    if targets.numel() == 0:  # nothing to predict in this batch: a zero that still has a graph
        return hidden.sum() * 0.0, cache
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, len(targets), CHUNK_TOKENS):
        end = start + CHUNK_TOKENS
        total = total + checkpoint(_chunk_loss, hidden[start:end], targets[start:end], head.weight, head.bias,
                                   use_reentrant=False)
    return total / len(targets), cache


def _chunk_loss(hidden, targets, weight, bias):
    logits = F.linear(hidden, weight, bias).float()
    return F.cross_entropy(logits, targets, reduction="sum")
