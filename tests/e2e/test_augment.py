"""EDA and back-translation augmentation in whole training runs on tiny models."""

import json
import logging
import re
from pathlib import Path

from lft.train import train


def test_train_with_eda_on_a_tiny_classifier(make_cfg, tiny_bert, caplog):
    cfg = make_cfg(f"model.name_or_path={tiny_bert}", "augment=eda", "augment.p=0.5")
    with caplog.at_level(logging.INFO, logger="lft"):
        metrics = train(cfg)
    changed = metrics["augment/changed"]
    assert 0 < changed < metrics["augment/train_rows"]
    assert re.search(rf"augment=eda changed {changed} of \d+ train rows", caplog.text)
    saved = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert saved["augment/changed"] == changed and "test/accuracy" in saved


def test_train_with_back_translation_through_a_tiny_t5(make_cfg, tiny_bert, tiny_t5):
    cfg = make_cfg(f"model.name_or_path={tiny_bert}", "augment=back_translation", f"augment.model={tiny_t5}",
                   "augment.p=0.1", "augment.generate.max_new_tokens=4")
    metrics = train(cfg)
    assert 0 < metrics["augment/changed"] <= metrics["augment/train_rows"] and "test/accuracy" in metrics
