"""The fidelity matrix: lft's training forward against stock transformers + peft, family by family.

For each family, a tiny random model from a config (`seeded`: the same weights for both sides): the loss and the
gradients of the way lft trains (its speed paths applied as load_pretrained, the strategies and Bf16BaseWeights
apply them; the task's own loss) against `model(**batch).loss` of the model transformers builds, with peft's LoRA
for the adapter rows, in fp32 and under bf16 autocast. The tolerance is what the paths on declare
(lft/speed/contract.py): bitwise where every path on claims it; otherwise fp32 within rounding (FP32_RTOL) and
bf16 within the stock path's own error against fp32: |lft - fp32| <= STOCK_ERROR_FACTOR * |stock - fp32| + floor.
Families no allowlist names (a logit multiplier, softcapping, router losses) must get the stock computation,
bitwise. Dropout is 0 everywhere: dropout paths claim a distribution, tested in test_fast_dropout.py and
test_adapter_dropout.py.
"""

import copy
from contextlib import nullcontext
from functools import cache

import pytest
import torch
import transformers as tf
from omegaconf import OmegaConf
from peft import get_peft_model

from lft.config.paths import CONFIG_DIR
from lft.generation.prompt_states import PromptStates
from lft.models.loading import set_dropout, use_speed_paths
from lft.speed.bf16_base_weights import cast_frozen_base
from lft.speed.compile import compile_blocks
from lft.speed.contract import BITWISE, PATHS, STOCK_ERROR_FACTOR, marked
from lft.speed.lean_loss import causal_lm_forward, lm_parts
from lft.speed.precision import bf16_weights
from lft.strategies import apply_strategy
from lft.tasks.causal_lm import CausalLMTask
from lft.tasks.classification import ClassificationTask
from lft.tasks.seq2seq import Seq2SeqTask
from tests.conftest import seeded

VOCAB, ROWS, LENGTH, PAD = 128, 3, 14, 0
# fp32 "within rounding": another summation order (measured: 2e-7 at most, relative); also the floor of the bf16
# bound, for a stock error that happens to be 0.
FP32_RTOL = 1e-5
# Paths that change a dropout-free forward (dropout paths claim a distribution and are tested elsewhere).
DETERMINISTIC = ("lean_swiglu", "one_mask_attention", "gqa_without_repeats", "bf16_base_weights", "lean_loss")

DECODER = {"vocab_size": VOCAB, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64, "pad_token_id": PAD}
FAMILIES = {  # name: (model class, config, task kind, the speed paths lft turns on)
    "llama": (tf.LlamaForCausalLM, tf.LlamaConfig(**DECODER), "causal",
              {"lean_swiglu", "one_mask_attention", "gqa_without_repeats", "lean_loss"}),
    "qwen2": (tf.Qwen2ForCausalLM, tf.Qwen2Config(**DECODER), "causal",
              {"lean_swiglu", "one_mask_attention", "gqa_without_repeats", "lean_loss"}),
    "qwen3": (tf.Qwen3ForCausalLM, tf.Qwen3Config(**DECODER, head_dim=8), "causal",
              {"lean_swiglu", "one_mask_attention", "gqa_without_repeats", "lean_loss"}),
    "mistral": (tf.MistralForCausalLM, tf.MistralConfig(**DECODER, head_dim=8), "causal",
                {"lean_swiglu", "one_mask_attention", "gqa_without_repeats", "lean_loss"}),
    "llama_classifier": (tf.LlamaForSequenceClassification, tf.LlamaConfig(**DECODER, num_labels=2), "classify",
                         {"lean_swiglu", "one_mask_attention", "gqa_without_repeats"}),
    "gpt2": (tf.GPT2LMHeadModel, tf.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_positions=64),
             "causal", {"one_mask_attention", "lean_loss"}),
    "gpt2_classifier": (tf.GPT2ForSequenceClassification, tf.GPT2Config(
        vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_positions=64, pad_token_id=PAD), "classify",
        {"one_mask_attention"}),
    "opt": (tf.OPTForCausalLM, tf.OPTConfig(vocab_size=VOCAB, hidden_size=32, ffn_dim=64, num_hidden_layers=2,
                                            num_attention_heads=2, word_embed_proj_dim=32, pad_token_id=PAD,
                                            max_position_embeddings=64), "causal", {"one_mask_attention", "lean_loss"}),
    "bert": (tf.BertForSequenceClassification, tf.BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=64, num_labels=2), "classify", {"one_mask_attention"}),
    "distilbert": (tf.DistilBertForSequenceClassification, tf.DistilBertConfig(
        vocab_size=VOCAB, dim=32, hidden_dim=64, n_layers=2, n_heads=2, max_position_embeddings=64, num_labels=2),
        "classify", {"one_mask_attention"}),
    "t5": (tf.T5ForConditionalGeneration, tf.T5Config(
        vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
        feed_forward_proj="gated-gelu", tie_word_embeddings=False, pad_token_id=PAD, eos_token_id=1,
        decoder_start_token_id=PAD), "seq2seq", {"one_mask_attention"}),
    "bart": (tf.BartForConditionalGeneration, tf.BartConfig(
        vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
        pad_token_id=1, bos_token_id=PAD, eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=None),
        "seq2seq", {"one_mask_attention"}),
    # On no allowlist: each must train on the stock computation, bitwise.
    "gemma2_softcap": (tf.Gemma2ForCausalLM, tf.Gemma2Config(
        **DECODER, head_dim=8, final_logit_softcapping=1.0, attn_logit_softcapping=50.0), "causal", set()),  # bites on tiny logits
    "falcon_h1_multiplier": (tf.FalconH1ForCausalLM, tf.FalconH1Config(
        **DECODER, head_dim=8, mamba_d_ssm=32, mamba_n_heads=4, mamba_d_head=8, mamba_d_state=8,
        mamba_n_groups=1, mamba_chunk_size=16, lm_head_multiplier=4.0, mlp_multipliers=[0.5, 2.0]), "causal", set()),
    "mixtral_router_loss": (tf.MixtralForCausalLM, tf.MixtralConfig(
        **DECODER, num_local_experts=4, num_experts_per_tok=2, output_router_logits=True,
        router_aux_loss_coef=0.02), "causal", set()),
}


def _task(kind: str):
    if kind == "causal":
        return CausalLMTask(OmegaConf.create({"task": "seq2seq"}))  # prompt mode: labels on the response only
    if kind == "classify":
        return ClassificationTask(OmegaConf.create({"label_names": ["negative", "positive"]}))
    return Seq2SeqTask(OmegaConf.create({}))


def _batch(kind: str) -> dict:
    """Three rows, the last one padded (so attention gets a mask); causal labels on the second half only."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, VOCAB, (ROWS, LENGTH), generator=g)
    mask = torch.ones_like(ids)
    mask[-1, LENGTH - 5:] = 0
    ids[-1, LENGTH - 5:] = PAD
    if kind == "classify":
        return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 1])}
    if kind == "seq2seq":
        labels = torch.randint(4, VOCAB, (ROWS, 6), generator=g)
        labels[-1, 4:] = -100
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}
    labels = ids.clone()
    labels[:, : LENGTH // 2] = -100
    labels[mask == 0] = -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _model(family: str):
    cls, config, _, _ = FAMILIES[family]
    config = copy.deepcopy(config)
    set_dropout(config, 0.0)
    config._attn_implementation = None  # each side gets the class's default (sdpa where it supports it)
    model = seeded(cls, config)
    model.train()
    return model


# lft's default LoRA (all-linear) where peft takes it; peft refuses LoRA on Mamba layers.
LORA_TARGETS = {"falcon_h1_multiplier": ["q_proj", "k_proj", "v_proj", "o_proj"]}


@cache
def _lora_cfg(family: str):
    cfg = OmegaConf.load(CONFIG_DIR / "strategy" / "lora.yaml")
    cfg.dropout = 0.0
    cfg.target_modules = LORA_TARGETS.get(family, cfg.target_modules)
    return cfg


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny matrices: a second thread only adds synchronisation (and on a shared machine, waiting)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _sides(family: str, lora: bool):
    """(lft's model, stock model, task): lft's built the way lft builds it, the stock one as transformers and peft
    do, with the same weights (LoRA B random, so both adapter matrices get gradients)."""
    kind = FAMILIES[family][2]
    task = _task(kind)
    ours, stock = _model(family), _model(family)
    use_speed_paths(ours)
    if lora:
        with torch.random.fork_rng():  # LoRA A's initialisation: the same whatever ran before
            torch.manual_seed(0)
            ours, task = apply_strategy(ours, _lora_cfg(family), task)
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for name, param in ours.named_parameters():
                if "lora_B" in name:
                    param.copy_(torch.randn(param.shape, generator=g) * 0.1)
        stock = get_peft_model(stock, copy.deepcopy(ours.peft_config["default"]))
        assert stock.load_state_dict(ours.state_dict(), strict=True)
    return ours, stock, task


def _run(model, loss_fn, batch, bf16: bool):
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = loss_fn(model, batch)
    loss.backward()
    grads = {n: p.grad.float().clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    return loss.detach().float(), grads


def _stock_loss(model, batch):
    return model(**batch).loss


def _error(x: torch.Tensor, ref: torch.Tensor) -> float:
    """Relative error of a tensor: |x - ref| / |ref| in the 2-norm (the largest element's error instead is the
    noisier statistic: lft's to stock's ratio up to 1.6 where the norms' is up to 1.3, same cases)."""
    return ((x - ref).norm() / ref.norm().clamp_min(1e-12)).item()


def measure(family: str, lora: bool, bf16: bool) -> dict:
    """Errors against the fp32 stock reference: lft's and (bf16) the stock path's, for the loss and the worst
    gradient; the paths lft turned on; whether lft equals the stock path bitwise."""
    ours, stock, task = _sides(family, lora)
    batch = _batch(FAMILIES[family][2])
    params = cast_frozen_base(ours) if (bf16 and lora) else []  # what Bf16BaseWeights does under bf16-mixed
    ref_loss, ref_grads = _run(stock, _stock_loss, batch, bf16=False)
    stock_loss, stock_grads = _run(stock, _stock_loss, batch, bf16) if bf16 else (ref_loss, ref_grads)
    lft_loss, lft_grads = _run(ours, task.loss, batch, bf16)
    assert lft_grads.keys() == ref_grads.keys() != set()
    on = marked(ours) | ({"lean_loss"} if isinstance(task, CausalLMTask) and lm_parts(ours) is not None else set())
    del params
    return {
        "paths": on & set(DETERMINISTIC),
        "bitwise": torch.equal(lft_loss, stock_loss) and all(torch.equal(lft_grads[n], stock_grads[n])
                                                             for n in ref_grads),
        "loss": (_error(lft_loss, ref_loss), _error(stock_loss, ref_loss)),
        "grads": {n: (_error(lft_grads[n], g), _error(stock_grads[n], g)) for n, g in ref_grads.items()},
    }


def _within(ours: float, stock: float, bf16: bool) -> bool:
    if not bf16:
        return ours <= FP32_RTOL
    return ours <= STOCK_ERROR_FACTOR * stock + FP32_RTOL


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_lft_trains_on_the_stock_loss_and_gradients_within_what_its_paths_declare(family, lora, bf16):
    result = measure(family, lora, bf16)
    # GPT-2's linear layers are Conv1D and its head is tied to the embedding: no frozen nn.Linear to cast.
    base_in_bf16 = bf16 and lora and FAMILIES[family][3] and family != "gpt2"
    expected = FAMILIES[family][3] | ({"bf16_base_weights"} if base_in_bf16 else set())
    assert result["paths"] == expected  # the matrix checks the paths it means to
    if all(PATHS[p].equals == BITWISE for p in result["paths"]):  # no path on (stock) is bitwise too
        assert result["bitwise"], result
        return
    errors = [result["loss"], *result["grads"].values()]
    assert all(_within(ours, stock, bf16) for ours, stock in errors), result


GENERATIVE = [f for f, (cls, *_ ) in FAMILIES.items() if cls.__name__ in PATHS["prompt_states"].models]


def _prompt_batches(kind: str):
    """Prompts (token ids), the right-padded evaluation batch over them (decoders: prompt + reference; encoder-
    decoders: the prompt, labels the reference), and the generation batch (decoders pad on the left)."""
    g = torch.Generator().manual_seed(2)
    prompts = [torch.randint(4, VOCAB, (n,), generator=g).tolist() for n in (5, 9, 7)]
    reference = torch.randint(4, VOCAB, (4,), generator=g).tolist()
    texts = [p + reference for p in prompts] if kind == "causal" else prompts
    width = max(map(len, texts))
    ids = torch.tensor([t + [PAD] * (width - len(t)) for t in texts])
    evaluation = {"input_ids": ids, "attention_mask": (torch.arange(width) < torch.tensor(
        [len(t) for t in texts])[:, None]).long()}
    evaluation["labels"] = (ids.masked_fill(evaluation["attention_mask"] == 0, -100) if kind == "causal"
                            else torch.tensor([reference] * len(prompts)))
    n = max(map(len, prompts))
    left = kind == "causal"
    rows = [[PAD] * (n - len(p)) + p if left else p + [PAD] * (n - len(p)) for p in prompts]
    mask = [[0] * (n - len(p)) + [1] * len(p) if left else [1] * len(p) + [0] * (n - len(p)) for p in prompts]
    return prompts, evaluation, {"input_ids": torch.tensor(rows), "attention_mask": torch.tensor(mask)}


def _logits(model, generation: dict, reused: dict, bf16: bool) -> torch.Tensor:
    settings = {"max_new_tokens": 4, "do_sample": False, "output_logits": True, "return_dict_in_generate": True,
                "pad_token_id": PAD, "eos_token_id": None}
    with bf16_weights(model) if bf16 else nullcontext():
        return torch.stack(model.generate(**generation, **settings, **reused).logits).float()


@torch.no_grad()
@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
@pytest.mark.parametrize("family", GENERATIVE)
def test_generation_from_prompt_states_gives_the_prefills_logits(family, bf16):
    """lft's evaluation forward (the lean loss for decoders) hands generation its states; the logits of each step
    equal a prefill's, within the prefill's own error in bf16 (generation's bf16 weights, lft.speed.precision)."""
    kind = FAMILIES[family][2]
    model = _model(family).eval()
    use_speed_paths(model)
    prompts, evaluation, generation = _prompt_batches(kind)
    width = evaluation["input_ids"].shape[1]
    if kind == "causal":
        states = PromptStates(cache=causal_lm_forward(model, evaluation, use_cache=True)[1], width=width)
    else:
        states = PromptStates.of(model(**evaluation), width)
    reused = states.generate_kwargs(model, [0, 1, 2], [len(p) for p in prompts], torch.bfloat16 if bf16 else None)
    assert reused  # the states are reused, no prefill
    reference = _logits(model, generation, {}, bf16=False)
    ours, stock = _logits(model, generation, reused, bf16), _logits(model, generation, {}, bf16)
    assert _within(_error(ours, reference), _error(stock, reference), bf16), (
        _error(ours, reference), _error(stock, reference))


@pytest.mark.slow  # compiles a block for fp32 and again for bf16 autocast: about a minute on 2 cores
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("family", [f for f, (cls, *_ ) in FAMILIES.items() if cls.__name__ in PATHS["compile"].models])
def test_compiled_blocks_train_on_the_stock_loss_within_its_error(family, lora):
    """compile=true (lft.speed.compile.compile_blocks) on top of lft's other paths: fp32 to rounding, bf16 within the stock
    path's error."""
    torch._dynamo.reset()
    ours, stock, task = _sides(family, lora)
    assert compile_blocks(ours) == 2 and "compile" in marked(ours)
    batch = _batch(FAMILIES[family][2])
    ref_loss, ref_grads = _run(stock, _stock_loss, batch, bf16=False)
    for bf16 in (False, True):
        stock_loss, stock_grads = _run(stock, _stock_loss, batch, bf16) if bf16 else (ref_loss, ref_grads)
        lft_loss, lft_grads = _run(ours, task.loss, batch, bf16)
        errors = [(_error(lft_loss, ref_loss), _error(stock_loss, ref_loss)),
                  *((_error(lft_grads[n], g), _error(stock_grads[n], g)) for n, g in ref_grads.items())]
        assert all(_within(o, s, bf16) for o, s in errors), (bf16, errors)
