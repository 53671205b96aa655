"""The fidelity contract at work: allowlists the matrix covers, a path on a family it does not fit caught (by the
matrix and by the fit-start check, which falls back to the stock path), lean blocks that change only their model."""

import dataclasses
import os

import pytest
import torch
from omegaconf import OmegaConf
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from lft.callbacks.fidelity_check import compare, differs, fall_back, paths_on
from lft.models.loading import use_speed_paths
from lft.speed.contract import PATHS, STOCK_ERROR, marked
from lft.speed.lean_blocks import LEAN_ATTENTION, SwiGLU
from lft.speed.lean_loss import lm_parts
from lft.tasks.causal_lm import CausalLMTask
from lft.tasks.classification import ClassificationTask
from tests.unit.speed.test_fidelity_matrix import (  # noqa: F401
    FAMILIES,
    _batch,
    _model,
    _one_thread,
    _within,
    measure,
)


def _allow(monkeypatch, path: str, model_class: str) -> None:
    """Put `model_class` on `path`'s allowlist for this test."""
    widened = dataclasses.replace(PATHS[path], models=PATHS[path].models | {model_class})
    monkeypatch.setitem(PATHS, path, widened)


def test_every_allowlisted_class_is_a_family_the_matrix_checks():
    checked = {cls.__name__ for cls, *_ in FAMILIES.values()}
    for path in PATHS.values():
        assert path.models <= checked, (path.name, path.models - checked)
    # lft's attention holds three paths: it runs only where all of them apply.
    one_mask = PATHS["one_mask_attention"].models
    assert PATHS["gqa_without_repeats"].models <= one_mask
    assert PATHS["fast_attention_dropout"].models == one_mask & PATHS["fast_dropout_masks"].models


@pytest.mark.parametrize("family,path", [
    ("falcon_h1_multiplier", "lean_loss"),  # lm_head_multiplier (issue 23: 4.850 for the stock 4.997)
    ("falcon_h1_multiplier", "lean_swiglu"),  # mlp_multipliers: an MLP shaped like Llama's that computes more
    ("mixtral_router_loss", "lean_loss"),  # the router's load-balancing loss
    ("gemma2_softcap", "lean_loss"),  # final_logit_softcapping
])
def test_a_path_on_a_family_it_does_not_fit_fails_the_matrix(family, path, monkeypatch):
    """Why the allowlists: put on such a family, the path trains on another loss, and the matrix says so."""
    _allow(monkeypatch, path, FAMILIES[family][0].__name__)
    result = measure(family, lora=False, bf16=False)
    assert path in result["paths"] and not result["bitwise"]
    worst = max(ours for ours, _ in [result["loss"], *result["grads"].values()])
    assert worst > 1e-3 and not _within(worst, 0.0, bf16=False)  # the stock error in fp32 is 0: its own reference


def test_the_fit_start_check_falls_back_to_the_stock_path_where_lft_differs(monkeypatch):
    _allow(monkeypatch, "lean_loss", "FalconH1ForCausalLM")
    _allow(monkeypatch, "lean_swiglu", "FalconH1ForCausalLM")
    model, task, batch = _model("falcon_h1_multiplier"), CausalLMTask(OmegaConf.create({"task": "seq2seq"})), _batch(
        "causal")
    use_speed_paths(model)
    assert "lean_swiglu" in marked(model) and lm_parts(model) is not None
    ours, stock, rtol = compare(model, task, batch)
    assert differs(ours, stock, rtol) and abs(ours - stock) > 1e-3 * stock
    fall_back(model)
    assert lm_parts(model) is None and not marked(model) & {"lean_swiglu", "lean_loss"}
    assert not any(isinstance(m.__dict__.get("forward"), type(SwiGLU.apply)) for m in model.modules())
    assert torch.equal(task.loss(model, batch), model(**batch).loss)  # the stock computation, bitwise


def test_the_fit_start_check_keeps_paths_that_agree_and_restores_each_modules_mode():
    model, task, batch = _model("llama"), CausalLMTask(OmegaConf.create({"task": "seq2seq"})), _batch("causal")
    use_speed_paths(model)
    model.model.layers[0].eval()  # a module a strategy keeps in eval mode stays there
    modes = {name: m.training for name, m in model.named_modules()}
    on = marked(model)
    ours, stock, rtol = compare(model, task, batch)
    assert not differs(ours, stock, rtol) and ours != stock  # rounding apart (GQA, the lean loss), within 1e-5
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert marked(model) == on and model.config._attn_implementation == LEAN_ATTENTION


def test_the_log_names_the_paths_on_for_the_model_and_task():
    model, task = _model("llama"), CausalLMTask(OmegaConf.create({"task": "seq2seq"}))
    use_speed_paths(model)  # Llama has no nn.Dropout module (its attention dropout is a number): no fast dropout
    cpu = ["lean_swiglu", "one_mask_attention", "gqa_without_repeats", "lean_loss"]
    assert paths_on(model, task, torch.device("cpu")) == cpu
    on_gpu = ["lean_swiglu", "one_mask_attention", "lean_loss"]  # GQA without repeats is for the CPU
    assert paths_on(model, task, torch.device("cuda")) == on_gpu
    bert = _model("bert")
    use_speed_paths(bert)
    assert paths_on(bert, ClassificationTask(OmegaConf.create({"label_names": ["a", "b"]})), torch.device("cpu")) == [
        "one_mask_attention", "fast_dropout_masks", "fast_attention_dropout"]


def test_lean_blocks_change_only_their_model_and_set_no_environment():
    environment = dict(os.environ)
    lean = _model("llama")
    use_speed_paths(lean)
    stock = _model("llama")
    assert lean.config._attn_implementation == LEAN_ATTENTION
    assert stock.config._attn_implementation == "sdpa" and not marked(stock)
    assert AttentionInterface._global_mapping["sdpa"] is sdpa_attention_forward
    assert dict(os.environ) == environment


def test_paths_declared_within_stock_error_say_how_they_differ():
    """A claim short of bitwise names what differs (a summation order, a shape, a kernel), so a reader can judge it."""
    for path in PATHS.values():
        assert path.claim and path.home.startswith("lft.")
        if path.equals == STOCK_ERROR:
            assert any(w in path.claim for w in ("rounding", "error")), path.name
