"""Distillation runs end to end: from a finished run, across vocabularies, and its refusals through train()."""

import logging
from pathlib import Path

import pytest
import torch

from lft.config.errors import ConfigError
from lft.train import train


def test_distill_from_a_finished_run(make_cfg, tiny_bert, tmp_path, caplog):
    teacher_cfg = make_cfg("strategy=lora", f"model.name_or_path={tiny_bert}")
    teacher_cfg.paths.output_dir = str(tmp_path / "teacher")
    train(teacher_cfg)
    cfg = make_cfg("strategy=distill", f"model.name_or_path={tiny_bert}", f"strategy.teacher={tmp_path / 'teacher'}",
                   "strategy.alpha=0.7", "strategy.temperature=3")
    with caplog.at_level(logging.INFO):
        metrics = train(cfg)
    assert metrics["optimizer_steps"] == 4 and metrics["trainable_params"] == metrics["total_params"]
    assert (Path(cfg.paths.output_dir) / "model" / "model.safetensors").exists()  # the student, not the teacher
    assert "teacher" not in "".join(torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt",
                                               weights_only=False)["state_dict"])


# --- bad input ----------------------------------------------------------------------------------------
def test_teacher_with_another_vocabulary(make_cfg, tiny_teacher, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    # A student with its own 100-token vocabulary and tokenizer.
    tok = Tokenizer(models.WordLevel({f"w{i}": i for i in range(100)} | {"[UNK]": 100}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    student_dir = tmp_path / "student"
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[UNK]").save_pretrained(student_dir)
    BertForSequenceClassification(BertConfig(vocab_size=101, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                             intermediate_size=64)).save_pretrained(student_dir)
    cfg = make_cfg("strategy=distill", f"model.name_or_path={student_dir}", f"strategy.teacher={tiny_teacher}")
    with pytest.raises(ConfigError, match="strategy.teacher: its vocabulary .* differs from the student's"):
        train(cfg)


def test_teacher_required_and_labels_must_match(make_cfg, tiny_bert, tiny_teacher):
    with pytest.raises(ConfigError, match="strategy=distill needs strategy.teacher="):
        train(make_cfg("strategy=distill", f"model.name_or_path={tiny_bert}"))
    cfg = make_cfg("strategy=distill", f"model.name_or_path={tiny_bert}", f"strategy.teacher={tiny_teacher}",
                   "data.label_names=[positive,negative]")
    with pytest.raises(ConfigError, match="its labels \\['negative', 'positive'\\] differ from data.label_names"):
        train(cfg)
    with pytest.raises(ConfigError, match="strategy.alpha=1.5 must be in"):
        train(make_cfg("strategy=distill", f"model.name_or_path={tiny_bert}", f"strategy.teacher={tiny_teacher}",
                       "strategy.alpha=1.5"))
