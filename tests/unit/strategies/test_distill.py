"""Knowledge distillation: the KD loss, students built from a teacher, teachers from runs, and bad input."""

import copy
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification, GPT2Config, GPT2LMHeadModel

from lft.config.errors import ConfigError
from lft.strategies.distill import DistillationTask, distill_loss, kd_loss, student_from_teacher
from lft.train import train


# --- the loss ---------------------------------------------------------------------------------------
def test_alpha_zero_is_the_task_loss():
    out = SimpleNamespace(logits=torch.randn(4, 3), loss=torch.tensor(0.7))
    assert distill_loss(out, torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), 2.0, alpha=0.0) == pytest.approx(0.7)


def test_identical_student_and_teacher_give_zero_kl():
    logits = torch.randn(4, 5, 11)
    assert kd_loss(logits, logits.clone(), temperature=3.0).item() == pytest.approx(0.0, abs=1e-6)


def test_kd_loss_is_t_squared_kl_of_softened_outputs():
    student, teacher, t = torch.randn(6, 4), torch.randn(6, 4), 2.0
    expected = F.kl_div(F.log_softmax(student / t, -1), F.softmax(teacher / t, -1), reduction="batchmean") * t**2
    assert kd_loss(student, teacher, t).item() == pytest.approx(expected.item(), rel=1e-5)
    out = SimpleNamespace(logits=student, loss=torch.tensor(1.0))
    mixed = distill_loss(out, teacher, None, t, alpha=0.25)
    assert mixed.item() == pytest.approx(0.75 * 1.0 + 0.25 * expected.item(), rel=1e-5)


def _tiny_gpt2():
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=32, n_embd=16, n_layer=2, n_head=2)).eval()


def test_causal_lm_kd_ignores_masked_positions():
    """Generic model(**batch) outputs: positions whose next-token label is -100 do not count."""
    student, teacher = _tiny_gpt2(), _tiny_gpt2()
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    ids = torch.randint(0, 50, (2, 8))
    labels = ids.clone()
    labels[:, :5] = -100  # a prompt the loss skips
    task = DistillationTask(SimpleNamespace(name="causal_lm"), teacher, temperature=2.0, alpha=1.0)
    loss = task.loss(student, {"input_ids": ids, "labels": labels})
    s, t = student(input_ids=ids).logits, teacher(input_ids=ids).logits
    expected = kd_loss(s[:, 4:7], t[:, 4:7], 2.0)  # logits at 4..6 predict the labelled tokens 5..7
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # Changing logits only where labels are masked leaves the loss unchanged; alpha=0 is the LM loss.
    task.alpha = 0.0
    assert task.loss(student, {"input_ids": ids, "labels": labels}).item() == pytest.approx(
        student(input_ids=ids, labels=labels).loss.item(), rel=1e-6)
    same = DistillationTask(SimpleNamespace(), copy.deepcopy(student), 2.0, 1.0)
    assert same.loss(student, {"input_ids": ids, "labels": labels}).item() == pytest.approx(0.0, abs=1e-6)


def test_distillation_task_delegates_everything_else():
    inner = SimpleNamespace(name="classification", peft_task_type="SEQ_CLS", metrics=lambda: "metrics")
    task = DistillationTask(inner, teacher=None, temperature=1.0, alpha=0.5)
    assert task.name == "classification" and task.metrics() == "metrics"


# --- students and teachers ----------------------------------------------------------------------------
def test_student_keeps_every_kth_teacher_layer(tiny_teacher):
    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_teacher).eval()
    student = student_from_teacher(teacher, 2)
    assert len(student.bert.encoder.layer) == 2 and student.config.num_hidden_layers == 2
    for new, old in ((0, 1), (1, 3)):  # layers 1 and 3 of 4: the top layer is kept
        torch.testing.assert_close(student.bert.encoder.layer[new].state_dict(),
                                   teacher.bert.encoder.layer[old].state_dict())
    torch.testing.assert_close(student.classifier.weight, teacher.classifier.weight)
    assert len(teacher.bert.encoder.layer) == 4  # the teacher is untouched
    assert student(input_ids=torch.tensor([[101, 2023, 102]])).logits.shape == (1, 2)
    with pytest.raises(ConfigError, match="student_layer_step=5: use 2..4"):
        student_from_teacher(teacher, 5)


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


def test_seq2seq_kd_uses_decoder_positions_unshifted():
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    config = T5Config(vocab_size=40, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2, decoder_start_token_id=0)
    student, teacher = T5ForConditionalGeneration(config).eval(), T5ForConditionalGeneration(config).eval()
    batch = {"input_ids": torch.randint(1, 40, (2, 6)), "labels": torch.tensor([[5, 6, 7, -100], [8, 9, -100, -100]])}
    task = DistillationTask(SimpleNamespace(), teacher, temperature=1.0, alpha=1.0)
    s, t = student(**batch).logits, teacher(**batch).logits
    expected = kd_loss(s, t, 1.0, mask=batch["labels"] != -100)  # decoder position i predicts label i
    assert task.loss(student, batch).item() == pytest.approx(expected.item(), rel=1e-5)
    task.alpha = 0.0
    assert task.loss(student, batch).item() == pytest.approx(student(**batch).loss.item(), rel=1e-6)
