"""LoRA's adapter dropout: the same dropout, a smaller record for backward (lft.speed.adapter_dropout)."""

import copy

import pytest
import torch
from peft import LoraConfig, inject_adapter_in_model
from torch import nn

from lft.speed import adapter_dropout
from lft.speed.adapter_dropout import (
    AdapterDropout,
    DroppingLoraA,
    pack_bits,
    unpack_bits,
    use_adapter_dropout,
)
from lft.speed.dropout_masks import apply_drop
from lft.strategies import apply_strategy
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


def test_adapter_dropout_keeps_the_inputs_dtype_under_autocast():
    x = torch.randn(4, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as nn.Dropout: DoRA reads the dtype of what it gets
        assert AdapterDropout(0.1)(x).dtype == torch.float32


def _kept_bytes(step, autocast: bool = True) -> int:
    """Bytes of distinct storages autograd keeps for backward (weights excluded) while `step()` runs (under bf16
    autocast by default) and returns a loss, then backward."""
    seen = {}

    def pack(t):
        if not isinstance(t, nn.Parameter):
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with (torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
          torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast)):
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
    # 0.66 here; 0.58 when the adapters shared one bf16 copy of the input, which rounds unlike peft
    assert lean < 0.7 * _saved_bytes(model, task, batch)


def _atens_masks(x, p, lanes=None):
    """`dropout_masks.dropped` drawing nn.Dropout's own mask on the CPU (ATen: `empty_like(x).bernoulli_(1 - p)`,
    divided by 1 - p, then `x * noise`), so that the same seed gives peft's dropout and lft's the same mask."""
    noise = torch.empty_like(x).bernoulli_(1 - p).div_(1 - p)
    drop, scale = noise == 0, noise.max().item()
    return apply_drop(x, drop, scale), drop, scale


class _Projections(nn.Module):
    """A layer's query and value projections, both reading one input."""

    def __init__(self, width: int):
        super().__init__()
        self.query, self.value = nn.Linear(width, 24), nn.Linear(width, 24)

    def forward(self, x):
        return self.query(x), self.value(x)


def _run(model, inputs, autocast):
    x = inputs.clone().requires_grad_()
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        outputs = model(x)
    weights = torch.randn(outputs[0].shape, generator=torch.Generator().manual_seed(2))
    sum((y.float() * weights * (i + 1)).sum() for i, y in enumerate(outputs)).backward()
    grads = [p.grad for _, p in sorted(model.named_parameters()) if p.requires_grad]
    return [*outputs, x.grad, *grads]


def test_atens_masks_draw_what_nn_dropout_draws():
    x = torch.randn(7, 300)
    torch.manual_seed(3)
    expected = nn.Dropout(0.1)(x)
    torch.manual_seed(3)
    assert torch.equal(_atens_masks(x, 0.1)[0], expected)


@pytest.mark.parametrize("autocast", [True, False])
@pytest.mark.parametrize("variant", ["lora", "dora"])
@pytest.mark.parametrize("shape", [(4, 37, 64), (5, 64)])
def test_adapter_dropout_gives_bitwise_what_peft_gives_for_the_same_mask(variant, autocast, shape, monkeypatch):
    """peft's LoRA (DoRA) layers with their nn.Dropout against the same layers after use_adapter_dropout
    (DroppingLoraA; AdapterDropout), drawing nn.Dropout's masks: outputs and gradients (input, every adapter
    weight) bitwise equal, in fp32 and under bf16 autocast, for two adapters reading one input."""
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, target_modules=["query", "value"],
                        use_dora=variant == "dora")
    stock = inject_adapter_in_model(config, _Projections(shape[-1]))
    for name, param in stock.named_parameters():
        if "lora_B" in name:  # peft starts B at 0: no gradient would reach A or the input
            nn.init.normal_(param)
    lft = copy.deepcopy(stock)
    assert use_adapter_dropout(lft) == 2
    fused = [isinstance(m, DroppingLoraA) for m in lft.modules() if isinstance(m, nn.Linear)]
    assert sum(fused) == (2 if variant == "lora" else 0)
    monkeypatch.setattr(adapter_dropout, "dropped", _atens_masks)
    inputs = torch.randn(*shape)
    for expected, got in zip(_run(stock, inputs, autocast), _run(lft, inputs, autocast), strict=True):
        assert got.dtype == expected.dtype and torch.equal(got, expected)


@pytest.mark.parametrize("autocast", [True, False])
def test_dropping_lora_a_keeps_a_bit_per_element_and_the_smaller_input(autocast):
    x = torch.randn(16, 64, requires_grad=True)
    adapters = [DroppingLoraA(nn.Linear(64, 8, bias=False), 0.1) for _ in range(2)]
    kept = _kept_bytes(lambda: sum(a(x).float().sum() for a in adapters), autocast)
    masks = 2 * 16 * 64 // 8
    if autocast:  # each adapter's bf16 dropped input, and bf16 weights
        assert kept == 2 * 16 * 64 * 2 + masks + 2 * 8 * 64 * 2
    else:  # the input once (it is a leaf here, so counted)
        assert kept == 16 * 64 * 4 + masks
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
