"""A multi-task mixture: several generative data configs trained as one, each validated on its own metrics.

`data=mixture data.mixture='{dialogsum: 0.6, alpaca: 0.4}'`: every member is an existing data config (its own
template, path, limits and generation settings; `data.members.<name>.<key>` changes one). Training draws rows
from the members by the mixing probabilities (data/mixture.py); validation and test batches hold one member
each and update that member's metrics: `val/dialogsum/rouge1`, `val/alpaca/loss`, `val/text/perplexity`; plain
`val/loss` is over every validation row. Members must be trained by the same task on the same model (text-to-text
or raw text on a decoder, or text-to-text on an encoder-decoder); classification joins as instructions
(data=imdb_instruct).
"""

import logging
from collections.abc import Callable, Mapping

import torch
from datasets import Dataset, DatasetDict, Features, concatenate_datasets
from omegaconf import DictConfig
from torchmetrics import MeanMetric

from lft.config.errors import ConfigError
from lft.data.datamodule import datamodule_for
from lft.data.mixture import member_configs, member_counts, mixing_probabilities, mixture_order
from lft.evaluation.metrics import collection
from lft.tasks.protocol import Encoded, Task

log = logging.getLogger(__name__)
TRAIN_COLUMNS = ("input_ids", "attention_mask", "labels")


class MemberMetrics(Mapping):
    """One member's slice of the mixture's metric collection, under the member's own metric names."""

    def __init__(self, metrics, name: str):
        self.metrics, self.prefix = metrics, f"{name}/"

    def __getitem__(self, key):
        return self.metrics[self.prefix + key]

    def __iter__(self):
        return (k.removeprefix(self.prefix) for k in self.metrics.keys(keep_base=True) if k.startswith(self.prefix))

    def __len__(self) -> int:
        return sum(1 for _ in self)


class MixtureTask:
    def __init__(self, data_cfg, build_member: Callable[[DictConfig, str], Task]):
        """build_member(member config, its key prefix in messages): the member's task (lft.tasks.build_task, with
        the run's model and augment settings), which also checks it."""
        self.cfg = data_cfg
        self.members = {}
        for name, cfg in member_configs(data_cfg).items():
            if cfg.get("task") not in ("seq2seq", "causal_lm"):
                raise ConfigError(f"data.mixture member {name!r} is a {cfg.get('task')} data config; mixtures train "
                                  "text generation (seq2seq or causal_lm data). Classification joins as instructions: "
                                  "use data config imdb_instruct (or write one like it).")
            self.members[name] = build_member(cfg, f"data.members.{name}")
        kinds = {name: type(task).__name__ for name, task in self.members.items()}
        if len(set(kinds.values())) > 1:
            raise ConfigError(f"data.mixture members need the same kind of model, but they are trained as "
                              f"{', '.join(f'{n}: {k}' for n, k in kinds.items())}; mix text-to-text data on an "
                              "encoder-decoder, or any text data on a decoder-only model.")
        self.first = next(iter(self.members.values()))
        self.name, self.peft_task_type = self.first.name, self.first.peft_task_type
        self.names = list(self.members)

    # --- data ---------------------------------------------------------------------------------
    def encode(self, tokenizer, seed: int, cache_dir: str | None = None) -> Encoded:
        members = {name: task.encode(tokenizer, seed, cache_dir=cache_dir) for name, task in self.members.items()}
        modules = {name: encoded.datamodule for name, encoded in members.items()}
        trains = {name: m.splits["train"] for name, m in modules.items()}
        sizes = {name: len(ds) for name, ds in trains.items()}
        probabilities = mixing_probabilities(self.cfg.mixture, sizes, self.cfg.get("sampling", "weights"),
                                             self.cfg.get("temperature", 1.0))
        epoch_rows = self.cfg.get("epoch_rows") or sum(sizes.values())
        counts = member_counts(probabilities, epoch_rows)
        log.info("Mixture: %s; %d training rows per epoch.", ", ".join(
            f"{n} {100 * probabilities[n]:.1f}% ({counts[n]} of {sizes[n]} rows)" for n in self.names), epoch_rows)
        offsets, start = {}, 0
        for name in self.names:
            offsets[name], start = start, start + sizes[name]
        splits = DatasetDict({"train": concatenate_datasets([trains[n].select_columns(list(TRAIN_COLUMNS))
                                                             for n in self.names])})
        for split in ("validation", "test"):
            parts = [modules[n].eval_split(split).add_column("member", [k] * len(modules[n].splits[split]))
                     for k, n in enumerate(self.names)]
            splits[split] = concatenate_datasets(aligned(parts))
        first = modules[self.names[0]]
        stats = {}  # what the members' encodings counted (augment/changed), summed
        for m in modules.values():
            for key, value in m.stats.items():
                stats[key] = stats.get(key, 0) + value
        datamodule = datamodule_for(self.cfg, splits, first.collate_fn, seed, train_collate_fn=first.train_collate_fn,
                                    train_order=mixture_order(offsets, sizes, counts), epoch_rows=epoch_rows,
                                    stats=stats, row_items=first.row_items)
        return Encoded(datamodule, members=members)

    # --- model --------------------------------------------------------------------------------
    def build_model(self, model_cfg, encoded: Encoded | None = None):
        return self.first.build_model(model_cfg, encoded.members[self.names[0]] if encoded else None)

    def head_modules(self, model) -> list[str]:
        return self.first.head_modules(model)

    # --- training and evaluation ----------------------------------------------------------------
    def metrics(self, encoded: Encoded):
        metrics = {}
        for name, task in self.members.items():
            own = task.metrics(encoded.members[name])
            metrics.update({f"{name}/{key}": m for key, m in own.items(keep_base=True)})
            metrics[f"{name}/loss"] = MeanMetric()
        return collection(metrics)

    def loss(self, model, batch) -> torch.Tensor:
        return self.first.loss(model, batch)  # one kind of task: every member's rows train alike

    def items(self, batch):
        return self.first.items(batch)

    def evaluate(self, model, batch, metrics, encoded: Encoded) -> torch.Tensor:
        member = batch.pop("member")
        name = self.names[int(member[0])]
        loss = self.members[name].evaluate(model, batch, MemberMetrics(metrics, name), encoded.members[name])
        metrics[f"{name}/loss"].update(loss.detach(), weight=len(member))
        return loss

    def take_samples(self, encoded: Encoded) -> list[dict]:
        return [{"task": name, **row} for name, task in self.members.items()
                for row in task.take_samples(encoded.members[name])]


def aligned(parts: list[Dataset]) -> list[Dataset]:
    """Give every part the columns of all (the missing filled with empty values), typed like their first holder,
    so the members' evaluation rows can share one dataset; a batch still holds one member only."""
    features = {}
    for part in parts:
        for column, feature in part.features.items():
            features.setdefault(column, feature)
    out = []
    for part in parts:
        for column, feature in features.items():
            if column not in part.column_names:
                part = part.add_column(column, [empty_value(feature)] * len(part), feature=feature)
        out.append(part.select_columns(list(features)).cast(Features(features)))
    return out


def empty_value(feature):
    dtype = getattr(feature, "dtype", None)
    if dtype in (None, "list"):
        return []
    return False if dtype == "bool" else "" if dtype in ("string", "large_string") else 0
