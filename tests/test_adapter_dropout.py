"""LoRA's adapter dropout: the same dropout, a smaller record for backward (lft.strategies.adapter_dropout)."""

import torch
from torch import nn

from lft.strategies import apply_strategy
from lft.strategies.adapter_dropout import AdapterDropout
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


def _saved_bytes(model, task, batch) -> int:
    """Bytes of distinct storages autograd keeps for backward (weights excluded)."""
    seen = {}

    def pack(t):
        if not isinstance(t, nn.Parameter):
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", dtype=torch.bfloat16):
        task.loss(model, batch).backward()  # lft's loss: the vocabulary's logits are not kept
    return sum(seen.values())


def test_lora_trains_with_adapter_dropout_and_keeps_less_for_backward(make_cfg, tiny_llama, pairs_data):
    cfg = make_cfg("data=dialogsum", f"data.path={pairs_data}", f"model.name_or_path={tiny_llama}", "strategy=lora",
                   "strategy.dropout=0.1", "strategy.target_modules=all-linear")
    task = build_task(cfg.data, cfg.model)
    model, task = apply_strategy(task.build_model(cfg.model), cfg.strategy, task)
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout) and m.p == 0.1]
    assert dropouts and all(isinstance(m, AdapterDropout) for m in dropouts)
    model.train()
    ids = torch.randint(5, 100, (4, 64))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    lean = _saved_bytes(model, task, batch)
    adapters = [p for n, p in model.named_parameters() if "lora_B" in n]  # lora_A starts with no gradient (B = 0)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in adapters)  # every adapter learns
    for module in model.modules():  # peft's own dropouts back, for comparison
        if hasattr(module, "lora_dropout"):
            for name in module.lora_dropout:
                module.lora_dropout[name] = nn.Dropout(0.1)
    assert lean < 0.8 * _saved_bytes(model, task, batch)
