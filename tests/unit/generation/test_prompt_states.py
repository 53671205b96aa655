"""Generation from the loss forward's prompt states: no second prefill, the same greedy tokens as with one."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from lft.generation.generator import Generator
from lft.generation.prompt_states import PromptStates

PROMPTS = ["a short one", "a somewhat longer prompt than that", "mid length prompt"]
SUFFIX = " and a reference after it"


def _loss_batch(tokenizer, decoder: bool):
    """A right-padded evaluation batch: prompt + reference for decoders, prompt (encoder input) otherwise."""
    prompts = [tokenizer(p)["input_ids"] for p in PROMPTS]
    texts = [tokenizer(p + SUFFIX)["input_ids"] for p in PROMPTS] if decoder else prompts
    batch = tokenizer.pad({"input_ids": texts}, return_tensors="pt")
    return prompts, batch


def _forward_lengths(model) -> list[int]:
    """Input lengths of the model's (decoder's) forward calls."""
    seen = []
    model.register_forward_pre_hook(lambda m, args, kw: seen.append((kw.get("input_ids") if kw.get(
        "input_ids") is not None else kw["decoder_input_ids"]).shape[1]), with_kwargs=True)
    return seen


def _decoder_states(tiny_llama):
    """The tiny Llama in eval mode, its prompts, and the prompt states of one loss forward over prompt + reference."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    prompts, batch = _loss_batch(tokenizer, decoder=True)
    return tokenizer, model, prompts, PromptStates.of(model(**batch), batch["input_ids"].shape[1])


@torch.no_grad()
def test_decoder_generates_from_the_loss_forward_cache(tiny_llama):
    tokenizer, model, prompts, states = _decoder_states(tiny_llama)
    generator = Generator(tokenizer, {"max_new_tokens": 6, "bf16": False}, decoder_only=True)
    rows, lengths = [2, 0, 1], [len(prompts[i]) for i in (2, 0, 1)]
    seen = _forward_lengths(model)
    reused = generator.generate(model, [prompts[i] for i in rows],
                                lambda dtype: states.generate_kwargs(model, rows, lengths, dtype))
    assert seen[0] == 1  # only the last prompt token is fed: no prefill
    seen.clear()
    fresh = generator.generate(model, [prompts[i] for i in rows])
    assert seen[0] == max(lengths) and reused == fresh


@torch.no_grad()
def test_reused_cache_gives_the_prefill_logits(tiny_llama):
    """Each row's keys keep their own positions: every step's logits match a fresh left-padded prefill."""
    tokenizer, model, prompts, states = _decoder_states(tiny_llama)
    tokenizer.padding_side = "left"
    left = tokenizer.pad({"input_ids": prompts}, return_tensors="pt")
    settings = {"max_new_tokens": 5, "do_sample": False, "output_logits": True, "return_dict_in_generate": True,
                "pad_token_id": tokenizer.pad_token_id}
    reused = model.generate(**left, **settings, **states.generate_kwargs(model, [0, 1, 2],
                                                                         [len(p) for p in prompts], None))
    fresh = model.generate(**left, **settings)
    torch.testing.assert_close(torch.stack(reused.logits), torch.stack(fresh.logits), atol=1e-5, rtol=1e-4)


def test_a_forward_without_position_ids_gets_a_prefill(tiny_llama):
    """BLOOM places tokens by ALiBi over the mask, with no position_ids: its cache is not moved."""
    from transformers import BloomConfig, BloomForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    model = BloomForCausalLM(BloomConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, n_layer=2, n_head=2)).eval()
    prompts, batch = _loss_batch(tokenizer, decoder=True)
    with torch.no_grad():
        states = PromptStates.of(model(**batch), batch["input_ids"].shape[1])
    assert states.cache is not None
    assert states.generate_kwargs(model, [0, 1], [len(prompts[0]), len(prompts[1])], None) == {}


@torch.no_grad()
def test_encoder_decoder_reuses_the_encoder_states(tiny_t5):
    tokenizer = AutoTokenizer.from_pretrained(tiny_t5)
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_t5).eval()
    prompts, batch = _loss_batch(tokenizer, decoder=False)
    labels = tokenizer.pad({"input_ids": [tokenizer(SUFFIX)["input_ids"]] * 3}, return_tensors="pt")["input_ids"]
    states = PromptStates.of(model(**batch, labels=labels), batch["input_ids"].shape[1])
    generator = Generator(tokenizer, {"max_new_tokens": 6, "bf16": False}, decoder_only=False)
    rows, lengths = [1, 2], [len(prompts[1]), len(prompts[2])]
    encoder_calls = []
    model.get_encoder().register_forward_hook(lambda *_: encoder_calls.append(1))
    reused = generator.generate(model, [prompts[i] for i in rows],
                                lambda dtype: states.generate_kwargs(model, rows, lengths, dtype))
    assert not encoder_calls
    fresh = generator.generate(model, [prompts[i] for i in rows])
    assert encoder_calls and reused == fresh


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_states_follow_the_generating_dtype(tiny_llama, dtype):
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    prompts, batch = _loss_batch(tokenizer, decoder=True)
    with torch.no_grad():
        states = PromptStates.of(model(**batch), batch["input_ids"].shape[1])
    cache = states.generate_kwargs(model, [0, 1], [len(prompts[0]), len(prompts[1])], dtype)["past_key_values"]
    keys = cache.layers[0].keys
    assert keys.dtype == (dtype or torch.float32)
    assert keys.shape[-2] == max(len(prompts[0]), len(prompts[1])) - 1


def test_states_that_do_not_line_up_fall_back_to_a_prefill(tiny_llama):
    """A cache wider than the batch (e.g. prompt tuning's virtual tokens) or no cache at all: no reuse."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    prompts, batch = _loss_batch(tokenizer, decoder=True)
    with torch.no_grad():
        output = model(**batch)
    width = batch["input_ids"].shape[1]
    assert PromptStates.of(output, width + 4).generate_kwargs(model, [0], [len(prompts[0])], None) == {}
    assert PromptStates(width=width).generate_kwargs(model, [0], [len(prompts[0])], None) == {}


@torch.no_grad()
def test_lean_loss_forward_keeps_the_prompt_cache(tiny_llama):
    """Evaluation's loss (lft.speed.lean_loss, the backbone without full logits) hands generation the same cache."""
    from lft.speed.lean_loss import causal_lm_forward

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    prompts, batch = _loss_batch(tokenizer, decoder=True)
    batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    loss, cache = causal_lm_forward(model, dict(batch), use_cache=True)
    torch.testing.assert_close(loss, model(**batch).loss)
    states = PromptStates(cache=cache, width=batch["input_ids"].shape[1])
    generator = Generator(tokenizer, {"max_new_tokens": 6, "bf16": False}, decoder_only=True)
    lengths = [len(p) for p in prompts]
    seen = _forward_lengths(model)
    reused = generator.generate(model, prompts, lambda dtype: states.generate_kwargs(model, [0, 1, 2], lengths, dtype))
    assert seen[0] == 1
    assert reused == generator.generate(model, prompts)
