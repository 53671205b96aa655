"""The fit-start fidelity check as a callback: it names the speed paths on and, on the first training batch, trains
on the stock path where lft's loss differs from the stock forward's (the check itself: lft/speed/check.py)."""

import logging

from lightning.pytorch.callbacks import Callback

from lft.speed.check import compare, differs, fall_back, paths_on
from lft.speed.contract import model_class

log = logging.getLogger("lft")


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
