"""speed.bf16_base_weights through whole LoRA runs: the adapters train as with fp32 base weights."""

import torch
from lightning.pytorch.callbacks import Callback
from safetensors.torch import load_file

import lft.recipes.train
from lft.speed.bf16_base_weights import Bf16BaseWeights
from lft.strategies import strategy_callbacks
from lft.train import train


class _Dtypes(Callback):
    """What the model's linear weights are while batches train."""

    def __init__(self):
        self.seen = set()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen.add(pl_module.model.get_base_model().model.layers[0].mlp.up_proj.base_layer.weight.dtype)


def _lora_run(make_cfg, tiny_llama, pairs_data, out, monkeypatch, base_in_bf16: bool):
    cfg = make_cfg("data=dialogsum", f"data.path={pairs_data}", f"model.name_or_path={tiny_llama}", "strategy=lora",
                   "trainer.precision=bf16-mixed", "test=false", out=out)
    dtypes = _Dtypes()
    monkeypatch.setattr(lft.recipes.train, "strategy_callbacks", lambda model: [
        *(c for c in strategy_callbacks(model) if base_in_bf16 or not isinstance(c, Bf16BaseWeights)), dtypes])
    metrics = train(cfg)
    return metrics, dtypes.seen, load_file(f"{metrics['weights_dir']}/adapter_model.safetensors")


def test_bf16_base_weights_train_the_same_adapters(make_cfg, tiny_llama, pairs_data, monkeypatch):
    metrics, dtypes, adapters = _lora_run(make_cfg, tiny_llama, pairs_data, "bf16", monkeypatch, True)
    plain_metrics, plain_dtypes, plain_adapters = _lora_run(make_cfg, tiny_llama, pairs_data, "fp32", monkeypatch,
                                                            False)
    assert dtypes == {torch.bfloat16} and plain_dtypes == {torch.float32}
    assert metrics["train/loss"] == plain_metrics["train/loss"]
    assert adapters.keys() == plain_adapters.keys()
    assert all(torch.equal(adapters[k], plain_adapters[k]) for k in adapters)  # autocast's very numbers
    assert any(adapters[k].abs().sum() > 0 for k in adapters if "lora_B" in k)  # and they did train
