"""Task families. A task turns raw splits into batches, builds the model, and defines loss and metrics.

Every task offers the same small surface, used by train() and the Lightning module:
  name, peft_task_type
  encode(tokenizer, seed) -> EncodedDataModule   load and validate data (before any model loads)
  build_model(model_cfg) -> nn.Module
  head_modules(model) -> list[str]               modules a PEFT/freeze strategy keeps trainable
  metrics() -> torchmetrics.MetricCollection
  loss(model, batch) -> Tensor                   training loss
  evaluate(model, batch, metrics) -> Tensor      validation/test loss; updates metrics
"""

from lft.errors import ConfigError
from lft.tasks.classification import ClassificationTask

TASKS = {"classification": ClassificationTask}


def build_task(data_cfg):
    name = data_cfg.get("task")
    if name not in TASKS:
        raise ConfigError(f"data.task={name!r} is unknown; choose one of {', '.join(TASKS)}.")
    return TASKS[name](data_cfg)
