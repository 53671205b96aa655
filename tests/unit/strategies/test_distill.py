"""Knowledge distillation: the KD loss, students built from a teacher, teachers from runs, and bad input."""

import copy
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification, GPT2Config, GPT2LMHeadModel

from lft.config.errors import ConfigError
from lft.strategies.distill import DistillationTask, distill_loss, kd_loss, student_from_teacher


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
    inner = SimpleNamespace(name="classification", peft_task_type="SEQ_CLS", metrics=lambda e: ("metrics", e))
    task = DistillationTask(inner, teacher=None, temperature=1.0, alpha=0.5)
    assert task.name == "classification" and task.metrics("encoded") == ("metrics", "encoded")


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
