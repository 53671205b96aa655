"""End-to-end runs of train() on a tiny random BERT: every strategy, the run folder, and reloadable weights."""

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForSequenceClassification

from lft.train import train


@pytest.mark.parametrize("strategy", ["full", "lora", "freeze"])
def test_strategy_trains_and_writes_run_folder(make_cfg, tiny_bert, strategy):
    extra = ["strategy.freeze_bottom_layers=1"] if strategy == "freeze" else []  # tiny_bert has 2 layers
    cfg = make_cfg(f"strategy={strategy}", f"model.name_or_path={tiny_bert}", *extra)
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["test/accuracy"] == metrics["test/accuracy"]  # the folder holds the figure the run returned
    assert saved["trainable_params"] < saved["total_params"] or strategy == "full"
    assert (run / "config.yaml").exists() and (run / "manifest.json").exists()
    assert (run / "checkpoints" / "best.ckpt").exists()
    assert metrics["optimizer_steps"] == 4


def test_lora_adapter_reloads_with_peft(make_cfg, tiny_bert):
    cfg = make_cfg("strategy=lora", f"model.name_or_path={tiny_bert}")
    train(cfg)
    adapter = Path(cfg.paths.output_dir) / "adapter"
    assert (adapter / "adapter_config.json").exists() and (adapter / "tokenizer.json").exists()
    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    model = PeftModel.from_pretrained(base, adapter)
    out = model(input_ids=torch.tensor([[101, 2023, 102]]))
    assert out.logits.shape == (1, 2)


def test_checkpoint_keeps_only_trainable_weights(make_cfg, tiny_bert):
    cfg = make_cfg("strategy=freeze", "strategy.head_only=true", f"model.name_or_path={tiny_bert}")
    train(cfg)
    state = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt", weights_only=False)["state_dict"]
    assert state and all(k.startswith(("model.classifier", "model.bert.pooler")) for k in state), list(state)
