"""Dropout from cheaper masks on the CPU (lft.fast_dropout): the distribution, the gradient, attention's numbers."""

import copy
import math

import pytest
import torch
from torch import nn
from torch.profiler import profile
from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

from lft import fast_dropout
from lft.fast_dropout import FastDropout, drop_mask, use_fast_dropout
from lft.lean_blocks import use_lean_blocks
from lft.models import load_pretrained
from lft.train import train


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_drop_mask_keeps_each_element_with_the_probability_its_scale_inverts(p):
    torch.manual_seed(0)
    n = 1 << 20
    drop, scale = drop_mask(torch.Size([n]), p, torch.device("cpu"))
    keep = ~drop
    sigma = math.sqrt(p * (1 - p) / (n // 4))
    for lane in range(4):  # each 16-bit lane of the 64-bit draws, the top one included
        assert abs(keep[lane::4].float().mean().item() - 1 / scale) < 5 * sigma
    assert abs(1 / scale - (1 - p)) < 1 / 65536


def test_drop_mask_is_reproduced_by_the_seed():
    shape = torch.Size([3, 5, 7])
    torch.manual_seed(1)
    first, _ = drop_mask(shape, 0.2, torch.device("cpu"))
    torch.manual_seed(1)
    again, _ = drop_mask(shape, 0.2, torch.device("cpu"))
    other, _ = drop_mask(shape, 0.2, torch.device("cpu"))
    assert first.shape == shape and torch.equal(first, again) and not torch.equal(first, other)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dropout_scales_survivors_and_passes_the_gradient_through_the_same_mask(dtype):
    torch.manual_seed(0)
    x = torch.randn(300, 400, dtype=dtype).requires_grad_()
    y = fast_dropout.dropout(x, 0.3)
    kept = y != 0
    _, scale = drop_mask(torch.Size([1]), 0.3, x.device)
    assert y.dtype == dtype and abs(kept.float().mean().item() - 0.7) < 0.01
    assert torch.equal(y[kept], (x[kept] * scale).to(dtype))
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad, (kept * scale).to(dtype))
    assert fast_dropout.dropout(x, 0.3, training=False) is x


@pytest.mark.parametrize("autocast", [False, True])
@pytest.mark.parametrize("case", ["padding_mask", "causal", "grouped_query"])
def test_attention_gives_bitwise_what_sdpas_math_kernel_gives_for_the_same_mask(case, autocast):
    torch.manual_seed(0)
    heads, kv_heads = (4, 2) if case == "grouped_query" else (4, 4)
    q = torch.randn(2, heads, 6, 8, requires_grad=True)
    k, v = (torch.randn(2, kv_heads, 6, 8, requires_grad=True) for _ in range(2))
    mask = None
    if case == "padding_mask":
        mask = torch.zeros(2, 1, 6, 6)
        mask[1, ..., 4:] = float("-inf")  # the second row's last two keys are padding
    module = nn.Module()
    module.num_key_value_groups = heads // kv_heads
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        torch.manual_seed(7)
        out, _ = fast_dropout.attention(module, q, k, v, mask, dropout=0.2, is_causal=case == "causal")
        torch.manual_seed(7)
        drop, scale = drop_mask(torch.Size([2, heads, 6, 6]), 0.2, q.device)
        assert 0 < drop.float().mean() < 0.5
        # SDPA's math kernel takes a given keep mask (for its own tests); its dropout_p sets the scale
        expected, _ = torch.ops.aten._scaled_dot_product_attention_math(
            q, k, v, mask, 1 - 1 / scale, case == "causal", ~drop, enable_gqa=case == "grouped_query")
    assert torch.equal(out, expected.transpose(1, 2))
    grads = torch.autograd.grad(out.float().sum(), (q, k, v))
    expected_grads = torch.autograd.grad(expected.float().sum(), (q, k, v))
    assert all(torch.equal(a, b) for a, b in zip(grads, expected_grads, strict=True))


def _tiny_bert():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, attention_probs_dropout_prob=0.1, hidden_dropout_prob=0.1,
                        attn_implementation="sdpa")
    return BertForSequenceClassification(config)


def test_a_lean_bert_trains_without_bernoulli_draws_and_evaluates_bitwise_as_before():
    plain = _tiny_bert()
    lean = copy.deepcopy(plain)
    use_lean_blocks(lean)
    assert use_fast_dropout(lean) == sum(type(m) is nn.Dropout for m in plain.modules()) > 0
    ids = torch.randint(0, 100, (3, 12))
    mask = torch.ones_like(ids)
    mask[-1, 8:] = 0
    labels = torch.tensor([0, 1, 1])
    with profile() as prof:
        lean.train()(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
    ops = {e.key for e in prof.key_averages()}
    assert "aten::bernoulli_" not in ops and "aten::random_" in ops
    assert all(p.grad is not None for p in lean.parameters() if p.requires_grad)
    with torch.no_grad():  # without dropout nothing changes
        assert torch.equal(plain.eval()(input_ids=ids, attention_mask=mask).logits,
                           lean.eval()(input_ids=ids, attention_mask=mask).logits)


def test_model_lean_blocks_false_keeps_the_dropout_transformers_builds_and_trains(make_cfg, tiny_bert):
    lean = load_pretrained(make_cfg(f"model.name_or_path={tiny_bert}").model, AutoModelForSequenceClassification)
    cfg = make_cfg(f"model.name_or_path={tiny_bert}", "model.lean_blocks=false", "strategy=lora")
    stock = load_pretrained(cfg.model, AutoModelForSequenceClassification)
    assert any(isinstance(m, FastDropout) for m in lean.modules())
    assert not any(isinstance(m, FastDropout) for m in stock.modules())
    assert train(cfg)["optimizer_steps"] == 4
