"""What a run prints: library messages that lft knows to be expected are held back, everything else goes through.

Three messages every run used to print, none asking anything of the user where lft holds them back:
- bitsandbytes, imported on a CPU with AVX512-BF16: "Failed to load CPU gemm_4bit_forward from kernels-community"
  (the Hub's faster 4-bit CPU kernel; bitsandbytes falls back to its own). Held from `import lft` on, and shown
  when a run loads k-bit weights on the CPU, the one case it concerns. GPU runs never see it.
- transformers' LOAD REPORT, when all it lists is the task head lft builds on a checkpoint without one (the
  classifier of AutoModelForSequenceClassification, MISSING; a causal LM's lm_head it replaces, UNEXPECTED). A
  report with anything else in it (backbone weights, mismatched shapes, a checkpoint that had this head) is shown
  as transformers wrote it. Held back too: a report listing only modules lft adds beside an architecture (PPO's
  value head saved in a run's model/), UNEXPECTED to the transformers class, which leaves them to lft.
- Lightning's "`weights_only` was not set" when its batch-size and lr finders save the temporary checkpoint they
  restore after their trials (lft's own checkpoints pass weights_only).
Each is a logging.Filter on the one logger that writes it, matching its message, in place only where expected.
"""

import logging
from contextlib import contextmanager

BNB_KERNEL = ("bitsandbytes.backends.cpu.ops", "Failed to load CPU gemm_4bit_forward from kernels-community")
LOAD_REPORT = ("transformers.modeling_utils", "LOAD REPORT")
FINDER_CHECKPOINT = ("lightning.pytorch.trainer.connectors.checkpoint_connector", "`weights_only` was not set")


class HoldBack(logging.Filter):
    """Holds back a logger's records whose message contains `text`; they wait in .held."""

    def __init__(self, text: str):
        super().__init__()
        self.text = text
        self.held: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if self.text in record.getMessage():
            self.held.append(record)
            return False
        return True


@contextmanager
def held_back(message: tuple[str, str]):
    """For the block: (logger name, text) records held back; yields the list they go to."""
    logger, hold = logging.getLogger(message[0]), HoldBack(message[1])
    logger.addFilter(hold)
    try:
        yield hold.held
    finally:
        logger.removeFilter(hold)


def show(records: list[logging.LogRecord]) -> None:
    """Emit held records after all, through their own loggers' handlers (their filter must be off by now)."""
    pending = records[:]
    records.clear()
    for record in pending:
        logging.getLogger(record.name).handle(record)


_bnb_kernel = HoldBack(BNB_KERNEL[1])


def hold_bitsandbytes_kernel_note() -> None:
    """From `import lft` on (bitsandbytes logs it once, when peft or transformers first import it)."""
    logging.getLogger(BNB_KERNEL[0]).addFilter(_bnb_kernel)


def show_bitsandbytes_kernel_note() -> None:
    """A run loads k-bit weights on the CPU: the note concerns it (from now on it goes through)."""
    logging.getLogger(BNB_KERNEL[0]).removeFilter(_bnb_kernel)
    show(_bnb_kernel.held)


def only_own_modules(info: dict, modules: tuple[str, ...]) -> bool:
    """True where the load report lists nothing but unused weights of `modules`, which lft adds beside an
    architecture (PPO's value head in a full PPO run's model/) and loads itself where a task wants them."""
    unexpected = info["unexpected_keys"]
    return bool(unexpected) and not (info["missing_keys"] or info["mismatched_keys"] or info["error_msgs"]) and all(
        key.split(".")[0] in modules for key in unexpected)


def only_new_head(model, info: dict, checkpoint_architectures: list[str]) -> bool:
    """True where transformers' load report lists nothing but a head swap: lft's new head missing, and at most the
    checkpoint's own head (a causal LM's lm_head) unused; no backbone weight among them, nothing mismatched, and
    the checkpoint of another class than the model built (one that had this head should hold its weights)."""
    if info["mismatched_keys"] or info["error_msgs"] or type(model).__name__ in checkpoint_architectures:
        return False
    backbone = {model.base_model_prefix, *(name for name, _ in model.base_model.named_children())}
    return all(key.split(".")[0] not in backbone for key in (*info["missing_keys"], *info["unexpected_keys"]))
