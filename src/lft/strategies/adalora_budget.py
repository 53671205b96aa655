"""AdaLoRA's rank budget as the callback its strategy contributes (the generic module knows nothing of it).

peft's AdaLoRA schedules the rank budget over the run's optimizer steps, known only when training starts,
and reallocates ranks from each step's gradients: after the optimizer step, before they are zeroed.
"""

from lightning.pytorch.callbacks import Callback

from lft.config.errors import ConfigError

PLACEHOLDER_STEPS = 1_000_000  # peft_family builds AdaLoRA with this until on_fit_start knows the real count


def rank_allocator(model):
    return getattr(getattr(model, "base_model", None), "rankallocator", None)


class AdaLoraBudget(Callback):
    def on_fit_start(self, trainer, pl_module) -> None:
        allocator = rank_allocator(pl_module.model)
        if allocator.peft_config.total_step != PLACEHOLDER_STEPS:
            return
        total, config = int(trainer.estimated_stepping_batches), allocator.peft_config
        if config.tinit >= total - config.tfinal:
            raise ConfigError(f"strategy.tinit={config.tinit} + strategy.tfinal={config.tfinal} leave no rank "
                              f"budgeting phase in {total} steps; lower them or train longer.")
        allocator.set_total_step(total)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        pl_module.model.base_model.update_and_allocate(trainer.global_step)
