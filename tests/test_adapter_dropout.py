"""LoRA's adapter dropout: the same dropout, a smaller record for backward (lft.strategies.adapter_dropout)."""

import pytest
import torch
from torch import nn

from lft.strategies import apply_strategy
from lft.strategies.adapter_dropout import AdapterDropout, DroppingLoraA, pack_bits, unpack_bits
from lft.tasks import build_task


def test_adapter_dropout_drops_scales_and_passes_gradient_through_the_mask():
    torch.manual_seed(0)
    x = torch.randn(200, 500, requires_grad=True)
    dropout = AdapterDropout(0.25)
    y = dropout(x)
    kept = y != 0
    assert abs(1 - kept.float().mean().item() - 0.25) < 0.01  # the share dropped is p
    assert torch.allclose(y[kept], x[kept] / 0.75)  # survivors scaled by 1/(1-p)
    y.sum().backward()
    assert torch.allclose(x.grad, kept.float() / 0.75)
    dropout.eval()
    assert dropout(x) is x


def test_adapter_dropout_computes_in_the_autocast_dtype():
    x = torch.randn(4, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert AdapterDropout(0.1)(x).dtype == torch.bfloat16
        assert AdapterDropout(0.1).eval()(x).dtype == torch.bfloat16  # the cast the adapter's matmul would make
    assert AdapterDropout(0.1)(x).dtype == torch.float32


def _kept_bytes(step) -> int:
    """Bytes of distinct storages autograd keeps for backward (weights excluded) while `step()` runs under bf16
    autocast and returns a loss, then backward."""
    seen = {}

    def pack(t):
        if not isinstance(t, nn.Parameter):
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", dtype=torch.bfloat16):
        step().backward()
    return sum(seen.values())


def _saved_bytes(model, task, batch) -> int:
    return _kept_bytes(lambda: task.loss(model, batch))  # lft's loss: the vocabulary's logits are not kept


def test_lora_trains_with_adapter_dropout_and_keeps_less_for_backward(make_cfg, tiny_llama, pairs_data):
    cfg = make_cfg("data=dialogsum", f"data.path={pairs_data}", f"model.name_or_path={tiny_llama}", "strategy=lora",
                   "strategy.dropout=0.1", "strategy.target_modules=all-linear")
    task = build_task(cfg.data, cfg.model)
    model, task = apply_strategy(task.build_model(cfg.model), cfg.strategy, task)
    layers = [m for m in model.modules() if hasattr(m, "lora_dropout")]
    assert layers and all(isinstance(m.lora_A["default"], DroppingLoraA) and m.lora_A["default"].p == 0.1
                          and isinstance(m.lora_dropout["default"], nn.Identity) for m in layers)
    model.train()
    ids = torch.randint(5, 100, (4, 64))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    lean = _saved_bytes(model, task, batch)
    adapters = [p for n, p in model.named_parameters() if "lora_B" in n]  # lora_A starts with no gradient (B = 0)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in adapters)  # every adapter learns
    for module in layers:  # peft's own dropout and lora_A back, for comparison
        plain = nn.Linear(module.lora_A["default"].in_features, module.lora_A["default"].out_features, bias=False)
        plain.weight = module.lora_A["default"].weight
        module.lora_A["default"], module.lora_dropout["default"] = plain, nn.Dropout(0.1)
    assert lean < 0.6 * _saved_bytes(model, task, batch)


@pytest.mark.parametrize("autocast", [True, False])
@pytest.mark.parametrize("shape", [(4, 37, 64), (3, 5)])
def test_dropping_lora_a_gives_adapter_dropout_then_lora_a_bitwise(autocast, shape):
    """Same draws, outputs and gradients (input, both adapters' weights) as AdapterDropout then an nn.Linear, for
    two adapters reading one input the way a layer's query and value adapters do."""
    torch.manual_seed(0)
    inputs = torch.randn(*shape)
    plain = [nn.Linear(shape[-1], 8, bias=False) for _ in range(2)]
    fused = [DroppingLoraA(linear, 0.1) for linear in plain]
    results = []
    for path in ("separate", "fused"):
        x = inputs.clone().requires_grad_()
        for linear in plain:
            linear.weight.grad = None
        torch.manual_seed(1)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            ys = [a(AdapterDropout(0.1)(x)) if path == "separate" else b(x) for a, b in zip(plain, fused, strict=True)]
        weights = torch.randn(ys[0].shape, generator=torch.Generator().manual_seed(2))
        sum((y.float() * weights * (i + 1)).sum() for i, y in enumerate(ys)).backward()
        results.append([*ys, x.grad, *(linear.weight.grad.clone() for linear in plain)])
    for separate, fused_result in zip(*results, strict=True):
        assert torch.equal(separate, fused_result)


def test_dropping_lora_a_keeps_one_input_copy_and_a_bit_per_element():
    x = torch.randn(16, 64, requires_grad=True)
    adapters = [DroppingLoraA(nn.Linear(64, 8, bias=False), 0.1) for _ in range(2)]
    kept = _kept_bytes(lambda: sum(a(x).float().sum() for a in adapters))
    weights_bf16 = 2 * 8 * 64 * 2
    assert kept == 16 * 64 * 2 + 2 * 16 * 64 // 8 + weights_bf16  # one bf16 input, two bit masks
    adapters[0].eval()
    assert torch.equal(adapters[0](x), x @ adapters[0].weight.t())  # no dropout in evaluation


@pytest.mark.parametrize("shape", [(3, 5), (2, 8), (1,), (4, 3, 7)])
def test_mask_bits_round_trip(shape):
    mask = torch.rand(shape) < 0.5
    assert torch.equal(unpack_bits(pack_bits(mask), mask.shape), mask)


def test_dora_keeps_adapter_dropout(make_cfg, tiny_llama, pairs_data):
    cfg = make_cfg("data=dialogsum", f"data.path={pairs_data}", f"model.name_or_path={tiny_llama}", "strategy=dora",
                   "strategy.dropout=0.1")
    task = build_task(cfg.data, cfg.model)
    model, _ = apply_strategy(task.build_model(cfg.model), cfg.strategy, task)
    layers = [m for m in model.modules() if hasattr(m, "lora_dropout")]
    assert layers and all(isinstance(m.lora_dropout["default"], AdapterDropout)
                          and type(m.lora_A["default"]) is nn.Linear for m in layers)
