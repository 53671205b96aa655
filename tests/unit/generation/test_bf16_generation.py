"""bf16 weights while generating: swapped in for the call, the fp32 tensors handed back untouched."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from lft.config.errors import ConfigError
from lft.generation.generator import Generator
from lft.speed.precision import bf16_weights, fast_bf16


def test_weights_are_bf16_inside_and_the_same_fp32_tensors_after(tiny_gpt2):
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2).eval()
    before = {name: (param, param.data_ptr(), param.detach().clone()) for name, param in model.named_parameters()}
    with bf16_weights(model):
        assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
        assert model.lm_head.weight is model.transformer.wte.weight  # still tied
        logits = model(input_ids=torch.tensor([[5, 6, 7]])).logits
    assert logits.dtype == torch.bfloat16
    for name, param in model.named_parameters():
        same_param, storage, values = before[name]
        assert param is same_param and param.data_ptr() == storage and param.dtype == torch.float32
        assert torch.equal(param, values)


def test_weights_come_back_when_the_block_fails(tiny_llama):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    with pytest.raises(RuntimeError, match="boom"), bf16_weights(model):
        raise RuntimeError("boom")
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def _linear_dtypes(model) -> list[torch.dtype]:
    """Weight dtypes the model's Linear layers saw during forward calls."""
    seen = []
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.register_forward_pre_hook(lambda m, _: seen.append(m.weight.dtype))
    return seen


@pytest.mark.parametrize(("fixture", "auto_class"), [("tiny_llama", AutoModelForCausalLM),
                                                      ("tiny_gpt2", AutoModelForCausalLM),
                                                      ("tiny_t5", AutoModelForSeq2SeqLM),
                                                      ("tiny_bart", AutoModelForSeq2SeqLM)])
def test_generation_runs_in_bf16_on_each_architecture(request, fixture, auto_class):
    path = request.getfixturevalue(fixture)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = auto_class.from_pretrained(path).eval()
    decoder = auto_class is AutoModelForCausalLM
    prompts = [tokenizer("a short one")["input_ids"], tokenizer("a somewhat longer prompt here")["input_ids"]]
    seen = _linear_dtypes(model)
    texts = Generator(tokenizer, {"max_new_tokens": 4, "bf16": True}, decoder_only=decoder).generate(model, prompts)
    assert len(texts) == 2 and set(seen) == {torch.bfloat16}
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    seen.clear()
    Generator(tokenizer, {"max_new_tokens": 4, "bf16": False}, decoder_only=decoder).generate(model, prompts)
    assert set(seen) == {torch.float32}


def test_bf16_setting():
    assert not fast_bf16(torch.device("meta"))


def test_config_check_names_the_bf16_values(make_cfg):
    from lft.config.validate import check_config

    check_config(make_cfg("data=dialogsum", "data.generate.bf16=false"))
    with pytest.raises(ConfigError, match=r"data.generate.bf16='yes' must be one of auto, True, False"):
        check_config(make_cfg("data=dialogsum", "data.generate.bf16=yes"))
