"""model.lean_blocks=false through a whole run: the dropout transformers builds stays, and the run trains."""

from transformers import AutoModelForSequenceClassification

from lft.models.loading import load_pretrained
from lft.speed.dropout_masks import FastDropout
from lft.train import train


def test_model_lean_blocks_false_keeps_the_dropout_transformers_builds_and_trains(make_cfg, tiny_bert):
    lean = load_pretrained(make_cfg(f"model.name_or_path={tiny_bert}").model, AutoModelForSequenceClassification)
    cfg = make_cfg(f"model.name_or_path={tiny_bert}", "model.lean_blocks=false", "strategy=lora")
    stock = load_pretrained(cfg.model, AutoModelForSequenceClassification)
    assert any(isinstance(m, FastDropout) for m in lean.modules())
    assert not any(isinstance(m, FastDropout) for m in stock.modules())
    assert train(cfg)["optimizer_steps"] == 4
