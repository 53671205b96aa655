"""The fidelity contract: each speed path, what it equals, and the model classes it applies to.

A speed path computes what transformers and peft compute, with less memory or time. Each declares one of:
- BITWISE: the same bits as the stock computation (loss and gradients), at every precision.
- STOCK_ERROR: at a precision below fp32, its error against an fp32 reference is within the stock path's own
  error at that precision (tests: |lft - fp32| <= STOCK_ERROR_FACTOR * |stock - fp32| + a rounding floor); in
  fp32, equal to rounding (another summation order).
- SAME_DISTRIBUTION: random masks drawn differently from ATen's, with the same distribution.

`models` is an allowlist of transformers model classes (the class `from_pretrained` builds, under peft its base
model), each one checked by tests/unit/speed/test_fidelity_matrix.py. A family joins a list when the matrix covers it: a
model of any other class gets the stock computation, with one log line. A subclass is another class: it may
change what the forward computes (a logit multiplier, a router loss), so it is not assumed to inherit the paths.

Paths that change how a loss is computed (lean blocks, the lean loss) are also checked on each fit's first batch
against the stock forward (callbacks/fidelity_check.py); a model that fails the check trains on the stock path.
"""

import logging
from dataclasses import dataclass

from torch import nn

log = logging.getLogger(__name__)

BITWISE = "bitwise"
STOCK_ERROR = "within the stock path's error"
SAME_DISTRIBUTION = "same distribution"
# A path of STOCK_ERROR may err against fp32 up to this many times as much as the stock path at the same precision:
# two computations rounding in different places have errors of the same size, not the same errors; across the
# matrix's families and seeds, per gradient tensor, lft's error was at most 1.3x the stock path's (1.6x with
# compile=true). A wrong computation shows in fp32 first, where the bound is rounding.
STOCK_ERROR_FACTOR = 2.0
# The fit-start check's tolerance on the loss, relative, by the dtype the forward computes in. fp32: rounding of
# another summation order is about 1e-7; a missing term (a logit multiplier, a router loss of coefficient 1e-3)
# is 1e-4 or more. bf16: one unit in the last place of the loss (2^-8); smaller missing terms hide in bf16's own
# error, which is why each path also has an allowlist.
CHECK_RTOL = {"float32": 1e-5, "bfloat16": 2**-8, "float16": 2**-10}

SWIGLU_DECODERS = frozenset({"LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "MistralForCausalLM",
                             "LlamaForSequenceClassification"})
SDPA_MODELS = SWIGLU_DECODERS | {"GPT2LMHeadModel", "GPT2ForSequenceClassification", "OPTForCausalLM",
                                 "BertForSequenceClassification", "DistilBertForSequenceClassification",
                                 "T5ForConditionalGeneration", "BartForConditionalGeneration"}
LINEAR_HEAD_DECODERS = frozenset({"LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "MistralForCausalLM",
                                  "GPT2LMHeadModel", "OPTForCausalLM"})
# Mistral's sliding-window cache layers are not moved (prompt_states.py): it gets a prefill anyway.
GENERATORS = (LINEAR_HEAD_DECODERS - {"MistralForCausalLM"}) | {"T5ForConditionalGeneration",
                                                                "BartForConditionalGeneration"}


@dataclass(frozen=True)
class SpeedPath:
    name: str
    equals: str  # BITWISE, STOCK_ERROR or SAME_DISTRIBUTION
    claim: str  # what it equals, in a sentence
    models: frozenset[str]
    home: str  # the module that implements it
    cpu_only: bool = False  # on other devices the stock computation runs


PATHS = {p.name: p for p in (
    SpeedPath("lean_swiglu", BITWISE, "SwiGLU MLPs keep gate and up for backward, not silu(gate): bitwise the "
              "stock loss and gradients", SWIGLU_DECODERS, "lft.speed.lean_blocks"),
    SpeedPath("one_mask_attention", BITWISE, "SDPA's additive mask made once per forward, not in every layer: "
              "bitwise the stock loss and gradients", SDPA_MODELS, "lft.speed.lean_blocks"),
    SpeedPath("gqa_without_repeats", STOCK_ERROR, "grouped-query attention with a mask reads each key/value head "
              "for its query heads instead of repeated copies: the same loss, gradients to rounding (another "
              "summation order over the heads a key/value head serves)", SWIGLU_DECODERS, "lft.speed.lean_blocks",
              cpu_only=True),
    SpeedPath("fast_dropout_masks", SAME_DISTRIBUTION, "dropout masks from 16-bit lanes of 64-bit draws: the "
              "same distribution as ATen's dropout (not the same draws); applies on CPU", SDPA_MODELS,
              "lft.speed.dropout_masks", cpu_only=True),
    SpeedPath("fast_attention_dropout", BITWISE, "SDPA's math kernel step by step with a cheap mask: given the "
              "same mask, bitwise F.scaled_dot_product_attention's output and gradients, in fp32 and under bf16 "
              "autocast (tests/unit/speed/test_fast_dropout.py); its error against fp32 is the stock path's", SDPA_MODELS,
              "lft.speed.dropout_masks", cpu_only=True),
    SpeedPath("adapter_dropout", BITWISE, "LoRA's lora_A(dropout(x)) as one step keeping a one-bit mask "
              "(DroppingLoraA): bitwise equal to peft's LoRA forward given the same mask", SDPA_MODELS,
              "lft.speed.adapter_dropout"),
    SpeedPath("bf16_base_weights", BITWISE, "frozen base linear weights cast to bf16 once per fit under bf16 "
              "autocast: bitwise autocast's numbers", SDPA_MODELS, "lft.speed.bf16_base_weights"),
    SpeedPath("lean_loss", STOCK_ERROR, "the causal-LM loss projects only labelled positions, a chunk at a time, "
              "recomputed in backward: the mean next-token cross-entropy, to rounding in fp32 (another summation "
              "order)", LINEAR_HEAD_DECODERS, "lft.speed.lean_loss"),
    SpeedPath("prompt_states", STOCK_ERROR, "generation starts from the evaluation forward's keys/values or "
              "encoder states, not a second prefill: the prefill's logits to rounding (another matrix shape)",
              GENERATORS, "lft.generation.prompt_states"),
    SpeedPath("compile", STOCK_ERROR, "torch.compile of each transformer block (compile=true): inductor fuses "
              "and reorders; within the stock path's error", frozenset({"LlamaForCausalLM"}), "lft.speed.compile"),
)}


def model_class(model: nn.Module) -> str:
    """The transformers class a path's allowlist names: under peft, the base model's."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return type(base).__name__


def _state(model: nn.Module) -> dict[str, set[str]]:
    """Per model, kept on the transformers model itself (a copy of the model carries it; nothing process-wide):
    the paths on, the paths the fit-start check turned off, and those whose stepping aside was logged."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    state = base.__dict__.get("_lft_speed")
    if state is None:
        state = base.__dict__["_lft_speed"] = {"on": set(), "off": set(), "logged": set()}
    return state


def applies(name: str, model: nn.Module) -> bool:
    """Whether speed path `name` may run on `model`: its class is on the path's allowlist and the fit-start check
    did not turn the path off. Call it where the path would act; a model it steps aside for is logged once."""
    path = PATHS[name]
    state = _state(model)
    if name in state["off"]:
        return False
    if model_class(model) in path.models:
        return True
    if name not in state["logged"]:
        state["logged"].add(name)
        log.info("Speed path %s steps aside for %s (not on its allowlist in lft/speed/contract.py): the stock "
                 "computation runs.", name, model_class(model))
    return False


def mark(model: nn.Module, name: str, on: bool = True) -> None:
    """Record that path `name` is on (or off again) for `model`, for the fit-start log line."""
    (_state(model)["on"].add if on else _state(model)["on"].discard)(name)


def turn_off(model: nn.Module, names: list[str]) -> None:
    """The fit-start check's fallback: these paths no longer apply to `model`."""
    state = _state(model)
    state["off"].update(names)
    state["on"].difference_update(names)


def marked(model: nn.Module) -> set[str]:
    return set(_state(model)["on"])
