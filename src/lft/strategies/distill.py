"""Knowledge distillation: a student learns from the labels and from a frozen teacher's softened outputs.

    loss = (1 - alpha) * task_loss + alpha * T^2 * KL(teacher_T || student_T)      (Hinton et al., 2015)

T softens both distributions so the student also learns the teacher's ranking of wrong answers; T^2 keeps the
gradient scale of the KL term independent of T. The student trains in full. It is `model=` (any model sharing
the teacher's tokenizer) or, with strategy.student_layer_step=k, a copy of the teacher keeping every k-th layer
(DistilBERT-style init). Works on any `model(**batch)` output with `.logits` and `.loss`: classification
logits [B, C], and LM logits [B, L, V] with labels == -100 marking positions that do not count.
"""

import copy
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from peft import PeftModel
from transformers import AutoConfig, AutoTokenizer

from lft.config.errors import ConfigError
from lft.models.blocks import block_list
from lft.models.loading import is_quantized, resolve_model_path
from lft.runs.folder import load_run_model, model_class
from lft.runs.layout import weights_folder

log = logging.getLogger(__name__)


# --- the loss ---------------------------------------------------------------------------------------
def kd_loss(student_logits, teacher_logits, temperature: float, mask=None) -> torch.Tensor:
    """T^2 * KL(softmax(teacher / T) || softmax(student / T)), averaged over the positions `mask` keeps."""
    s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    kl = (t.exp() * (t - s)).sum(-1)  # one value per example (classification) or per position (LM)
    if mask is not None:
        kl = kl[mask]
    return kl.mean() * temperature**2


def distill_loss(student_out, teacher_logits, labels, temperature: float, alpha: float,
                 causal: bool = False) -> torch.Tensor:
    """(1 - alpha) * the student's own task loss + alpha * kd_loss; LM positions with labels == -100 are left out."""
    student_logits, mask = student_out.logits, None
    if student_logits.dim() == 3 and labels is not None:
        # Prompt tuning prepends virtual tokens to the logits: keep the positions of the real tokens.
        student_logits = student_logits[:, -labels.shape[1]:]
        teacher_logits = teacher_logits[:, -labels.shape[1]:]
        if causal:  # position i predicts token i + 1
            student_logits, teacher_logits, labels = student_logits[:, :-1], teacher_logits[:, :-1], labels[:, 1:]
        mask = labels != -100
    kd = kd_loss(student_logits, teacher_logits, temperature, mask)
    if alpha == 1.0:
        return kd
    return (1 - alpha) * student_out.loss + alpha * kd


class DistillationTask:
    """The real task with a loss that also follows the teacher; data, metrics and evaluation stay the task's."""

    def __init__(self, task, teacher, temperature: float, alpha: float):
        self.task, self.teacher, self.temperature, self.alpha = task, teacher, temperature, alpha

    def __getattr__(self, name):  # only called for what this class lacks: delegate to the real task
        if name.startswith("__") or "task" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["task"], name)

    def loss(self, model, batch) -> torch.Tensor:
        out = model(**batch)
        device = out.logits.device
        if next(self.teacher.parameters()).device != device:  # Lightning moves the student only
            self.teacher.to(device)
        with torch.no_grad():
            teacher_logits = self.teacher(**batch).logits
        causal = not getattr(model.config, "is_encoder_decoder", False)
        return distill_loss(out, teacher_logits, batch.get("labels"), self.temperature, self.alpha, causal)


# --- the strategy -----------------------------------------------------------------------------------
def apply(model, cfg, task):
    if not cfg.get("teacher"):
        raise ConfigError("strategy=distill needs strategy.teacher=<lft run folder, model folder or Hub id>.")
    if not 0.0 <= cfg.alpha <= 1.0:
        raise ConfigError(f"strategy.alpha={cfg.alpha} must be in [0, 1] (0 = labels only, 1 = teacher only).")
    if cfg.temperature <= 0:
        raise ConfigError(f"strategy.temperature={cfg.temperature} must be positive (1 = no softening).")
    teacher, teacher_dir = load_teacher(str(cfg.teacher))
    if cfg.get("student_layer_step"):
        model = student_from_teacher(teacher, int(cfg.student_layer_step))
    else:
        check_vocabulary(teacher, teacher_dir, model)
    check_heads(teacher, model)
    for param in model.parameters():
        param.requires_grad_(True)
    model.train()
    teacher.eval()
    for param in teacher.parameters():
        param.requires_grad_(False)
    return model, DistillationTask(task, teacher, cfg.temperature, cfg.alpha)


def load_teacher(source: str):
    """(model, folder holding its tokenizer): an lft run folder (model/ or base + adapter/), a model folder or Hub id."""
    run = Path(source).expanduser()
    folder = weights_folder(run)
    if folder:
        return load_run_model(run, merge="auto"), str(folder)
    try:
        path = resolve_model_path(source)
        config = AutoConfig.from_pretrained(path)
    except (OSError, ConfigError) as err:
        raise ConfigError(f"strategy.teacher={source!r}: not an lft run folder, model folder or reachable Hub id "
                          f"({err}).") from err
    return model_class(config).from_pretrained(path), path


def student_from_teacher(teacher, step: int):
    """DistilBERT-style init: a copy of the teacher keeping every `step`-th transformer layer, the top one included."""
    if isinstance(teacher, PeftModel) or is_quantized(teacher):
        raise ConfigError("strategy.student_layer_step: needs a full-precision teacher with merged weights; "
                          "give model=<smaller model> instead.")
    layers_name, layers = block_list(teacher)
    keep = list(range(step - 1, len(layers), step))  # e.g. 6 layers, step 2 -> layers 1, 3, 5
    if step < 2 or not keep:
        raise ConfigError(f"strategy.student_layer_step={step}: use 2..{len(layers)} "
                          f"(the teacher has {len(layers)} layers).")
    student = copy.deepcopy(teacher)
    parent_name, _, attr = layers_name.rpartition(".")
    parent = student.get_submodule(parent_name) if parent_name else student
    kept = torch.nn.ModuleList(getattr(parent, attr)[i] for i in keep)
    setattr(parent, attr, kept)
    for new_index, layer in enumerate(kept):  # caches index layers by position
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_index
    config = student.config
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        if hasattr(config, key):
            setattr(config, key, len(keep))
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = [config.layer_types[i] for i in keep]
    log.info("Student: teacher layers %s of %d (%s).", keep, len(layers), layers_name)
    return student


def check_vocabulary(teacher, teacher_dir: str, student) -> None:
    """Both models read the same input ids (and LMs predict over the same tokens): their vocabularies must match."""
    t_size, s_size = teacher.config.vocab_size, student.config.vocab_size
    t_vocab, s_vocab = _vocab(teacher_dir), _vocab(student.name_or_path)
    if t_size != s_size or (t_vocab is not None and s_vocab is not None and t_vocab != s_vocab):
        raise ConfigError(
            f"strategy.teacher: its vocabulary ({t_size} tokens, {teacher_dir}) differs from the student's "
            f"({s_size} tokens, {student.name_or_path}); distillation needs one tokenizer. Pick a student that "
            "shares the teacher's tokenizer, or build one from the teacher with strategy.student_layer_step=2."
        )


def _vocab(path):
    try:
        return AutoTokenizer.from_pretrained(path).get_vocab()
    except (OSError, ValueError, TypeError):
        return None


def check_heads(teacher, student) -> None:
    """Same kind of head (e.g. ForSequenceClassification) and, for classifiers, the same labels in the same order."""
    t_model = teacher.get_base_model() if isinstance(teacher, PeftModel) else teacher
    t_head, s_head = (type(m).__name__.rpartition("For")[2] for m in (t_model, student))
    if t_head != s_head:
        raise ConfigError(f"strategy.teacher: a {type(t_model).__name__} cannot teach a {type(student).__name__}; "
                          f"give a teacher fine-tuned for the same task (For{s_head}).")
    if s_head == "SequenceClassification":
        t_labels = list(t_model.config.id2label.values())
        s_labels = list(student.config.id2label.values())
        named = not all(str(n).startswith("LABEL_") for n in t_labels)
        if len(t_labels) != len(s_labels) or (named and t_labels != s_labels):
            raise ConfigError(f"strategy.teacher: its labels {t_labels} differ from data.label_names {s_labels}; "
                              "use the teacher's labels in the teacher's order.")
