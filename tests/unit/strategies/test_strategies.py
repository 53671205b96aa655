"""Strategies on a tiny model: the peft family, k-bit loading, gradient checkpointing, bad input (every
strategy file through train(): tests/e2e/test_strategies.py)."""

import sys

import pytest
import torch

from lft.config.errors import ConfigError
from lft.config.validate import bitsandbytes_problem, check_config
from lft.strategies import apply_strategy
from lft.tasks import build_task


def _model_and_task(make_cfg, tiny_bert, *overrides):
    cfg = make_cfg(f"model.name_or_path={tiny_bert}", *overrides)
    check_config(cfg)
    task = build_task(cfg.data)  # sentiment_sample names its labels: the model is built without encoding
    return cfg, task.build_model(cfg.model), task


def _one_step(model, task):
    batch = {"input_ids": torch.randint(1000, 2000, (4, 12)), "attention_mask": torch.ones(4, 12, dtype=torch.long),
             "labels": torch.tensor([0, 1, 0, 1])}
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    task.loss(model, batch).backward()
    optimizer.step()
    changed = [n for n, p in model.named_parameters() if n in trainable and not torch.equal(p, trainable[n])]
    return trainable, changed


def test_qlora_step_on_cpu_updates_only_adapters(make_cfg, tiny_bert):
    import bitsandbytes as bnb

    cfg, model, task = _model_and_task(make_cfg, tiny_bert, "strategy=qlora")
    assert cfg.model.quantization.bits == 4 and cfg.model.gradient_checkpointing
    model, _ = apply_strategy(model, cfg.strategy, task)
    query = model.base_model.model.bert.encoder.layer[0].attention.self.query
    assert isinstance(query.base_layer, bnb.nn.Linear4bit) and query.base_layer.weight.quant_type == "nf4"
    trainable, changed = _one_step(model, task)
    assert all("lora_" in n or "classifier" in n for n in trainable)
    assert any("lora_" in n for n in changed)


def test_lora_8bit_loads_int8_layers(make_cfg, tiny_bert):
    import bitsandbytes as bnb

    cfg, model, task = _model_and_task(make_cfg, tiny_bert, "strategy=lora_8bit")
    model, _ = apply_strategy(model, cfg.strategy, task)
    assert isinstance(model.base_model.model.bert.encoder.layer[0].attention.self.value.base_layer, bnb.nn.Linear8bitLt)
    # The seed guide's post-processing: small (norm) weights stay fp32.
    assert all(p.dtype == torch.float32 for n, p in model.named_parameters() if "LayerNorm" in n)
    assert _one_step(model, task)[1]


@pytest.mark.parametrize("strategy", ["lora", "full"])
def test_gradient_checkpointing_switch_trains(make_cfg, tiny_bert, strategy):
    cfg, model, task = _model_and_task(make_cfg, tiny_bert, f"strategy={strategy}",
                                       "strategy.gradient_checkpointing=true")
    model, _ = apply_strategy(model, cfg.strategy, task)
    assert any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
    model.train()
    trainable, changed = _one_step(model, task)
    # LoRA A and B both move, so gradients reached through the checkpointed (frozen) blocks.
    assert any("lora_A" in n for n in changed) or strategy == "full"
    assert any("encoder.layer.0" in n for n in changed)


def test_peft_family_variants_build_what_they_say(make_cfg, tiny_bert):
    from peft import PeftType

    expected = {"dora": PeftType.LORA, "ia3": PeftType.IA3, "adalora": PeftType.ADALORA,
                "prompt_tuning": PeftType.PROMPT_TUNING}  # prefix tuning: tests/unit/strategies/test_prefix_tuning_cache.py
    for name, peft_type in expected.items():
        cfg, model, task = _model_and_task(make_cfg, tiny_bert, f"strategy={name}")
        model, _ = apply_strategy(model, cfg.strategy, task)
        assert model.peft_config["default"].peft_type == peft_type
    assert model.peft_config["default"].modules_to_save  # the head trains in full
    cfg, model, task = _model_and_task(make_cfg, tiny_bert, "strategy=dora", "strategy.use_rslora=true",
                                       "strategy.bias=lora_only")
    lora = apply_strategy(model, cfg.strategy, task)[0].peft_config["default"]
    assert lora.use_dora and lora.use_rslora and lora.bias == "lora_only"


# --- bad input: one clear message each -------------------------------------------------------------
def test_kbit_where_bitsandbytes_cannot_run(make_cfg, monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import fails, as on a platform without a build
    bitsandbytes_problem.cache_clear()
    try:
        with pytest.raises(ConfigError, match=r"model.quantization.bits=4: bitsandbytes cannot run.*strategy=lora"):
            check_config(make_cfg("strategy=qlora"))
    finally:
        bitsandbytes_problem.cache_clear()


def test_kbit_needs_a_peft_strategy(make_cfg):
    with pytest.raises(ConfigError, match="k-bit weights cannot be trained directly"):
        check_config(make_cfg("strategy=full", "+strategy.quantization={bits: 4}"))


def test_prompt_tuning_on_an_unsupported_task(make_cfg, tiny_bert):
    cfg, model, task = _model_and_task(make_cfg, tiny_bert, "strategy=prompt_tuning")

    class TokenClassification(type(task)):  # a family lft does not ship: tasks do not change after they are built
        name, peft_task_type = "token_classification", "TOKEN_CLS"

    with pytest.raises(ConfigError, match="strategy=prompt_tuning: peft's virtual tokens support SEQ_CLS"):
        apply_strategy(model, cfg.strategy, TokenClassification(task.cfg))


def test_unknown_lora_target_and_bias(make_cfg, tiny_bert):
    cfg, model, task = _model_and_task(make_cfg, tiny_bert, "strategy=qlora", "strategy.target_modules=[q_proj]")
    with pytest.raises(ConfigError, match="strategy.target_modules: \\['q_proj'\\] not found"):
        apply_strategy(model, cfg.strategy, task)
    cfg, model, task = _model_and_task(make_cfg, tiny_bert, "strategy=dora", "strategy.bias=some")
    with pytest.raises(ConfigError, match="strategy.bias='some'"):
        apply_strategy(model, cfg.strategy, task)


def test_qlora_keeps_training_after_an_evaluation_pass(make_cfg, tiny_bert_64):
    """bitsandbytes repacks 4-bit weights for CPU inference on the first eval-mode forward; training must go on."""
    if bitsandbytes_problem(4):
        pytest.skip(f"bitsandbytes cannot run here: {bitsandbytes_problem(4)}")
    cfg, model, task = _model_and_task(make_cfg, tiny_bert_64, "strategy=qlora")
    model, task = apply_strategy(model, cfg.strategy, task)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param)  # non-zero, so gradients reach lora_A too
    model.eval()
    with torch.inference_mode():
        model(input_ids=torch.randint(1000, 2000, (2, 12)))
    model.train()
    trainable, changed = _one_step(model, task)
    assert changed and all("lora_" in n or "classifier" in n or "score" in n for n in trainable)
    assert any("lora_A" in n for n in changed) and any("lora_B" in n for n in changed)
