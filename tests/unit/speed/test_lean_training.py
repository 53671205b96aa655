"""Memory-lean training that must not change a number: SwiGLU, GQA on CPU, one additive mask per forward;
lean blocks keep nothing between forwards (bf16 base weights in a whole run: tests/e2e/test_lean_training.py)."""

import copy
import os

import pytest
import torch
from transformers import AttentionInterface, LlamaConfig, LlamaForCausalLM
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from lft.speed.lean_blocks import LEAN_ATTENTION, use_lean_blocks


def _step(model, ids, mask=None, autocast: bool = False):
    """One forward and backward: bytes of distinct storages kept for backward, the loss, the gradients."""
    kept = {}  # a tensor saved by several layers counts once

    def pack(t):
        kept[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    model.zero_grad()
    with (torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast),
          torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)):
        loss = model(input_ids=ids, attention_mask=mask, labels=ids).loss
    loss.backward()
    return sum(kept.values()), loss.detach(), [p.grad.clone() for p in model.parameters()]


def _padded_llama(layers: int, heads: int, kv_heads: int, rows: int, length: int):
    """A tiny SDPA Llama and a batch whose last row is padded, so transformers passes SDPA a mask."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=80, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=kv_heads, attn_implementation="sdpa")
    ids = torch.randint(0, 128, (rows, length))
    mask = torch.ones_like(ids)
    mask[-1, length - 8:] = 0
    return LlamaForCausalLM(config), ids, mask


@pytest.mark.parametrize("autocast", [False, True])
def test_lean_swiglu_gives_bitwise_the_same_loss_and_gradients_and_keeps_less(autocast):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    plain = LlamaForCausalLM(config)
    lean = copy.deepcopy(plain)
    assert use_lean_blocks(lean) == 2
    ids = torch.randint(0, 128, (3, 17))
    kept_plain, loss_plain, grads_plain = _step(plain, ids, autocast=autocast)
    kept_lean, loss_lean, grads_lean = _step(lean, ids, autocast=autocast)
    assert torch.equal(loss_plain, loss_lean)
    assert all(torch.equal(a, b) for a, b in zip(grads_plain, grads_lean, strict=True))
    width = 2 if autocast else 4  # bytes of an element of the MLP's activations
    assert kept_plain - kept_lean == 2 * 3 * 17 * 160 * width  # one MLP-wide tensor per layer less


def test_attention_on_cpu_keeps_one_mask_and_unrepeated_key_values_with_the_same_numbers():
    lean, ids, mask = _padded_llama(layers=2, heads=8, kv_heads=2, rows=3, length=40)
    stock = copy.deepcopy(lean)
    environment = dict(os.environ)
    use_lean_blocks(lean)
    assert lean.config._attn_implementation == LEAN_ATTENTION
    # Only `lean` changed: the stock copy in the same process keeps transformers' SDPA (and its repeated heads).
    assert stock.config._attn_implementation == "sdpa" and dict(os.environ) == environment
    assert AttentionInterface._global_mapping["sdpa"] is sdpa_attention_forward
    kept_repeat, loss_repeat, grads_repeat = _step(stock, ids, mask)
    kept_gqa, loss_gqa, grads_gqa = _step(lean, ids, mask)
    assert torch.equal(loss_repeat, loss_gqa)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads_repeat, grads_gqa, strict=True))
    # Per layer: key and value repeated for 8 query heads instead of 2 (6 heads x 8 dims x 3 x 40 tokens x 4
    # bytes each) and SwiGLU's third MLP-wide tensor (80 x 3 x 40 x 4 bytes); one additive mask (3 x 40 x 40 x 4
    # bytes) for both layers instead of one each.
    assert kept_repeat - kept_gqa == 2 * (2 * 6 * 8 * 3 * 40 * 4 + 80 * 3 * 40 * 4) + 3 * 40 * 40 * 4


def test_one_additive_mask_per_forward_gives_bitwise_the_same_loss_and_gradients():
    model, ids, mask = _padded_llama(layers=3, heads=4, kv_heads=4, rows=2, length=24)
    kept_plain, loss_plain, grads_plain = _step(model, ids, mask, autocast=True)
    use_lean_blocks(model)
    kept_lean, loss_lean, grads_lean = _step(model, ids, mask, autocast=True)
    assert torch.equal(loss_plain, loss_lean)
    assert all(torch.equal(a, b) for a, b in zip(grads_plain, grads_lean, strict=True))
    # Per layer, SwiGLU's third MLP-wide tensor (80 x 2 x 24, bf16); one bf16 mask (2 x 24 x 24) instead of three:
    # RoPE hands SDPA fp32 queries, so the mask is built in the autocast dtype SDPA casts to.
    assert kept_plain - kept_lean == 3 * 80 * 2 * 24 * 2 + 2 * (2 * 24 * 24 * 2)


def test_lean_blocks_keep_no_tensor_between_forwards():
    """The mask is built per forward: a tensor cached at module level outlived its forward and broke
    torch.compile's guards once it was collected (an order-dependent failure of the compile test)."""
    import lft.speed.lean_blocks as lean_blocks

    model, ids, mask = _padded_llama(layers=2, heads=4, kv_heads=4, rows=2, length=12)
    use_lean_blocks(model)
    _step(model, ids, mask, autocast=True)
    assert not [name for name, value in vars(lean_blocks).items() if isinstance(value, torch.Tensor | tuple)]
