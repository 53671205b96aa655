"""Dropout from cheaper masks on the CPU (lft.speed.dropout_masks): the distribution, the gradient, attention's numbers
against what the stock model computes with the same mask."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.profiler import profile
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
)

from lft.speed import dropout_masks
from lft.speed.dropout_masks import drop_mask, use_fast_dropout
from lft.speed.lean_blocks import use_lean_blocks


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
    y = dropout_masks.dropout(x, 0.3)
    kept = y != 0
    _, scale = drop_mask(torch.Size([1]), 0.3, x.device)
    assert y.dtype == dtype and abs(kept.float().mean().item() - 0.7) < 0.01
    assert torch.equal(y[kept], (x[kept] * scale).to(dtype))
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad, (kept * scale).to(dtype))
    assert dropout_masks.dropout(x, 0.3, training=False) is x


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_uniform_masks_off_the_cpu_drop_with_p_and_scale_by_its_inverse(p):
    """The branch `dropped` takes on GPUs (fp32 uniform draws), run on the CPU."""
    torch.manual_seed(0)
    x = torch.randn(1 << 20, requires_grad=True)
    out, drop, scale = dropout_masks.dropped(x, p, lanes=False)
    assert scale == 1 / (1 - p) and abs(drop.float().mean().item() - p) < 5 * math.sqrt(p * (1 - p) / x.numel())
    assert torch.equal(out, (x * scale).masked_fill(drop, 0))
    out.backward(torch.ones_like(out))
    assert torch.equal(x.grad, torch.full_like(x, scale).masked_fill(drop, 0))
    torch.manual_seed(1)
    lanes = dropout_masks.dropped(x, p)[1]  # on the CPU by default: drop_mask's lanes
    torch.manual_seed(1)
    assert torch.equal(lanes, drop_mask(x.shape, p, x.device)[0])


def _atens_mask(shape, p, device):
    """`drop_mask` drawing ATen's dropout noise (`empty(shape).bernoulli_(1 - p).div_(1 - p)`, what SDPA's math
    kernel draws for its probabilities): the same seed gives lft's attention and the stock one the same mask."""
    noise = torch.empty(shape, device=device).bernoulli_(1 - p).div_(1 - p)
    return noise == 0, noise.max().item()


@pytest.mark.parametrize("autocast", [False, True])
@pytest.mark.parametrize("case", ["padding_mask", "boolean_mask", "empty_row", "causal", "grouped_query"])
def test_attention_gives_bitwise_what_sdpa_gives_with_dropout_for_the_same_mask(case, autocast):
    """lft's attention against `F.scaled_dot_product_attention` as transformers calls it in training (dropout on,
    so the math kernel on the CPU), with ATen's mask made explicit: output and gradients bitwise equal."""
    torch.manual_seed(0)
    heads, kv_heads = (4, 2) if case == "grouped_query" else (4, 4)
    q = torch.randn(2, heads, 6, 8, requires_grad=True)
    k, v = (torch.randn(2, kv_heads, 6, 8, requires_grad=True) for _ in range(2))
    mask = None
    if case in ("padding_mask", "boolean_mask", "empty_row"):
        mask = torch.zeros(2, 1, 6, 6)
        mask[1, ..., 4:] = -math.inf  # the second row's last two keys are padding
        if case == "empty_row":
            mask[1, :, 2] = -math.inf  # a query with no key to attend to: SDPA gives zeros
        if case == "boolean_mask":
            mask = mask == 0
    module = nn.Module()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        torch.manual_seed(7)
        expected = F.scaled_dot_product_attention(q, k, v, mask, dropout_p=0.2, is_causal=case == "causal",
                                                  enable_gqa=case == "grouped_query").transpose(1, 2)
        torch.manual_seed(7)
        drop, scale = _atens_mask(torch.Size([2, heads, 6, 6]), 0.2, q.device)
        assert 0 < drop.float().mean() < 0.5
        out, _ = dropout_masks.attention_with_mask(module, q, k, v, mask, drop, scale, is_causal=case == "causal")
    assert out.dtype == expected.dtype and torch.equal(out, expected)
    if case == "empty_row":
        assert torch.equal(out[1, 2], torch.zeros_like(out[1, 2]))
    grads = torch.autograd.grad(out.float().sum(), (q, k, v))
    expected_grads = torch.autograd.grad(expected.float().sum(), (q, k, v))
    assert all(torch.equal(a, b) for a, b in zip(grads, expected_grads, strict=True))


def test_attention_draws_its_mask_from_drop_mask():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 6, 8) for _ in range(3))
    torch.manual_seed(7)
    out, _ = dropout_masks.attention(nn.Module(), q, k, v, None, dropout=0.2, is_causal=True)
    torch.manual_seed(7)
    drop, scale = drop_mask(torch.Size([2, 4, 6, 6]), 0.2, q.device)
    assert torch.equal(out, dropout_masks.attention_with_mask(nn.Module(), q, k, v, None, drop, scale, is_causal=True)[0])


def _tiny(family: str):
    """A tiny BERT or GPT-2 with attention dropout only (other dropouts would draw masks the stock model draws
    elsewhere)."""
    torch.manual_seed(0)
    if family == "bert":
        return BertForSequenceClassification(BertConfig(
            vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            attention_probs_dropout_prob=0.1, hidden_dropout_prob=0.0, attn_implementation="sdpa"))
    return GPT2LMHeadModel(GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=64,
                                      attn_pdrop=0.1, resid_pdrop=0.0, embd_pdrop=0.0, attn_implementation="sdpa"))


@pytest.mark.parametrize("autocast", [False, True])
@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_a_lean_model_trains_bitwise_as_the_stock_one_given_the_same_attention_masks(family, autocast, monkeypatch):
    """The model transformers builds against the same model with lft's lean blocks and fast dropout, lft's drawing
    ATen's masks: loss and every gradient bitwise equal, in fp32 and under bf16 autocast (padding on the left, so
    GPT-2's padding queries have no key to attend to)."""
    stock = _tiny(family)
    lean = copy.deepcopy(stock)
    use_lean_blocks(lean)
    use_fast_dropout(lean)
    drawn = []
    monkeypatch.setattr(dropout_masks, "drop_mask", lambda *args: drawn.append(args[0]) or _atens_mask(*args))
    ids = torch.randint(0, 100, (3, 12))
    mask = torch.ones_like(ids)
    mask[-1, :4] = 0
    labels = torch.tensor([0, 1, 1]) if family == "bert" else ids.masked_fill(mask == 0, -100)
    results = []
    for model in (stock, lean):
        torch.manual_seed(3)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model.train()(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        results.append([loss, *(p.grad for p in model.parameters())])
    assert drawn == [torch.Size([3, 2, 12, 12])] * 2  # lft's attention ran in both layers
    assert all(torch.equal(a, b) for a, b in zip(*results, strict=True))


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
