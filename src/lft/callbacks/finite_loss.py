"""Stop at the first non-finite training loss, before it reaches the weights or a checkpoint."""

import torch
from lightning.pytorch.callbacks import Callback


class NonFiniteLossError(RuntimeError):
    """The run diverged; the message names the step and the checkpoint to go back to."""


class FiniteLossGuard(Callback):
    def on_before_backward(self, trainer, pl_module, loss: torch.Tensor) -> None:
        if torch.isfinite(loss).all():  # one host sync per step: the loss is logged anyway
            return
        last = next((c.path for c in trainer.checkpoint_callbacks if hasattr(c, "path") and c.path.exists()), None)
        keep = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
        raise NonFiniteLossError(
            f"train/loss is {loss.item()} at optimizer step {trainer.global_step} (epoch {trainer.current_epoch}, "
            f"batch {trainer.fit_loop.epoch_loop.batch_idx}); the step was not applied and {keep}. Lower "
            "optimizer.lr, keep trainer.gradient_clip_val, or use precision=bf16/fp32 instead of fp16."
        )
