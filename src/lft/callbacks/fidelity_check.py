"""The fit-start fidelity check: lft's training loss against the stock forward on the first batch.

The allowlists of lft/speed/contract.py keep each speed path to model classes the fidelity matrix tests; this is
the second line, for what a class name cannot tell (a checkpoint's config that changes what its forward
computes). On the first training batch, with dropout off (eval mode) and no graph, under the run's precision:
lft's loss (the task's, with lean blocks and the lean loss) against `model(**batch).loss` with lean blocks off.
Where they differ by more than CHECK_RTOL allows at the forward's precision, the model trains on the stock path
(lean blocks and the lean loss off), with one log line. Two forwards, once per fit.

The run log names the speed paths on (one line when training starts). Tasks whose loss is not the model's own
(DPO, reward, distillation) are not checked; their speed paths are those the allowlists let through.
"""

import logging
from contextlib import nullcontext

import torch
from lightning.pytorch.callbacks import Callback

from lft.generation.generator import split_fields
from lft.speed.contract import CHECK_RTOL, PATHS, applies, marked, model_class, turn_off
from lft.speed.lean_blocks import stock_blocks, stock_blocks_within
from lft.speed.lean_loss import lm_parts
from lft.tasks.causal_lm import CausalLMTask
from lft.tasks.classification import ClassificationTask
from lft.tasks.seq2seq import Seq2SeqTask

log = logging.getLogger("lft")
# Paths that change how the checked loss is computed: the fallback turns these off.
CHECKED = ("lean_swiglu", "one_mask_attention", "gqa_without_repeats", "lean_loss")


def model_inputs(task, batch: dict) -> dict | None:
    """The batch as `model(**inputs).loss` takes it, where the task's training loss is that loss; else None."""
    task = getattr(task, "first", task)  # a mixture trains like its first member
    if isinstance(task, (CausalLMTask, Seq2SeqTask)):
        return split_fields(batch)[0]
    if isinstance(task, ClassificationTask):
        return batch
    return None


def _lean_loss(model, task) -> bool:
    """Whether the task's training loss is lft's lean causal-LM loss for this model."""
    return isinstance(getattr(task, "first", task), CausalLMTask) and lm_parts(model) is not None


def paths_on(model, task, device: torch.device, encoded=None) -> list[str]:
    """The speed paths on for this model and task (encoded: what its encode() returned), in the contract's order."""
    on = marked(model)
    if {"one_mask_attention", "fast_dropout_masks"} <= on:
        on.add("fast_attention_dropout")  # lft's attention draws cheap masks where the model's dropouts are lft's
    if _lean_loss(model, task):
        on.add("lean_loss")
    if encoded is not None and encoded.members:  # a mixture generates like its first member
        encoded = next(iter(encoded.members.values()))
    generator = encoded.generator if encoded is not None else None
    if generator is not None and generator.enabled and applies("prompt_states", model):
        on.add("prompt_states")
    return [name for name, path in PATHS.items() if name in on and (device.type == "cpu" or not path.cpu_only)]


def _compute_dtype(model, device: torch.device) -> torch.dtype:
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def compare(model, task, batch: dict, context=None) -> tuple[float, float, float] | None:
    """(lft's loss, the stock forward's, the tolerance) on `batch`, dropout off and no graph; None where the task's
    loss is not the model's own or no checked path is on. Every module's train/eval mode is restored after."""
    inputs = model_inputs(task, batch)
    lean_blocks = bool(marked(model) & {"lean_swiglu", "one_mask_attention"})
    if inputs is None or not (_lean_loss(model, task) or lean_blocks):
        return None
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:  # compiled blocks run eagerly here: the check is about lft's computation, not a compile of eval mode
        with torch.no_grad(), context or nullcontext(), torch.compiler.set_stance("force_eager"):
            dtype = _compute_dtype(model, next(model.parameters()).device)
            ours = task.loss(model, batch).float().item()
            with stock_blocks_within(model):
                stock = model(**inputs).loss.float().item()
    finally:
        for module, training in modes.items():
            module.train(training)
    return ours, stock, CHECK_RTOL.get(str(dtype).removeprefix("torch."), CHECK_RTOL["float32"])


def differs(ours: float, stock: float, rtol: float) -> bool:
    return not abs(ours - stock) <= rtol * max(abs(stock), 1e-6)  # a NaN differs


def fall_back(model) -> None:
    """Train `model` on the stock path: lean blocks and the lean loss off."""
    stock_blocks(model)
    turn_off(model, list(CHECKED))


class FidelityCheck(Callback):
    """Logs the speed paths on when training starts; checks the first training batch of the fit."""

    def __init__(self):
        self.checked = False

    def on_train_start(self, trainer, pl_module) -> None:
        names = paths_on(pl_module.model, pl_module.task, pl_module.device, pl_module.encoded)
        log.info("Speed paths on for %s (lft/speed/contract.py): %s.", model_class(pl_module.model),
                 ", ".join(names) or "none")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.checked:
            return
        self.checked = True
        model = pl_module.model
        result = compare(model, pl_module.task, batch, trainer.strategy.precision_plugin.train_step_context())
        wrong = result is not None and differs(*result)
        if trainer.strategy.reduce_boolean_decision(wrong, all=False):  # every rank takes the same path
            fall_back(model)
            if result is not None:
                ours, stock, rtol = result
                log.warning("Fidelity check: lft's loss %.6g vs the stock forward's %.6g on the first batch "
                            "(relative difference %.2g, %.2g allowed): %s trains on the stock path (lean blocks "
                            "and the lean loss off).", ours, stock, abs(ours - stock) / max(abs(stock), 1e-6),
                            rtol, model_class(model))
