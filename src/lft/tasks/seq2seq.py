"""Text-to-text with an encoder-decoder (T5, flan-T5, BART): template(source columns) -> target.

The encoder reads the rendered template (e.g. "Summarize the following conversation.\n\n{dialogue}\n\nSummary: "),
the decoder learns the target; label padding is -100, so it carries no loss.
"""

from functools import partial

import torch
from datasets import DatasetDict
from torch import nn
from transformers import AutoModelForSeq2SeqLM

from lft.data.augment import augment_train
from lft.data.cache import cached_encoding
from lft.data.datamodule import EncodedDataModule, labelled_tokens
from lft.data.pairs import (
    eval_fields,
    limit_long_targets,
    load_pairs,
    map_rows,
    reference_columns,
    row_target,
)
from lft.data.templates import PromptBuilder, get_template
from lft.generation.generator import (
    EvalCollator,
    Generator,
    evaluate_text,
    generation_order,
    split_fields,
    text_metrics,
)
from lft.models.loading import load_pretrained


class Seq2SeqTask:
    name = "seq2seq"
    peft_task_type = "SEQ_2_SEQ_LM"
    augment = None  # the run's `augment` settings (build_task): applied to train sources before tokenizing

    def __init__(self, data_cfg):
        self.cfg = data_cfg
        self.generator: Generator | None = None

    # --- data ---------------------------------------------------------------------------------
    def encode(self, tokenizer, seed: int, cache_dir: str | None = None) -> EncodedDataModule:
        cfg = self.cfg
        prompts = self.prompt_builder(tokenizer)
        self.generator = Generator(tokenizer, cfg.get("generate"), decoder_only=False)
        encoded, metadata = cached_encoding(lambda: self._tokenize(tokenizer, seed, prompts), task=type(self).__name__,
                                            data_cfg=cfg, tokenizer=tokenizer, seed=seed, cache_dir=cache_dir,
                                            augment=self.augment)
        return EncodedDataModule(encoded, EvalCollator(tokenizer), cfg.batch_size, cfg.eval_batch_size,
                                 cfg.get("num_workers", 0), seed=seed,
                                 group_by_length=cfg.get("group_by_length", True), stats=metadata.get("stats"),
                                 eval_order=generation_order, row_items=partial(labelled_tokens, shifted=False))

    def _tokenize(self, tokenizer, seed: int, prompts: PromptBuilder) -> tuple[DatasetDict, dict]:
        cfg = self.cfg
        splits, template = load_pairs(cfg, seed)
        splits, stats = augment_train(splits, self.augment, source_columns(cfg, template, splits["train"]), seed)
        limits = {"validation": gen_limit(cfg, "val_samples"), "test": gen_limit(cfg, "test_samples")}

        def encode_split(split, ds):
            refs = reference_columns(cfg, ds)

            def encode_rows(rows, indices):
                sources = prompts.build_ids(rows)
                targets = tokenizer([row_target(cfg, refs, row) for row in rows], add_special_tokens=True)["input_ids"]
                out = []
                for row, idx, source, target in zip(rows, indices, sources, targets, strict=True):
                    too_long = cfg.max_target_length is not None and len(target) > cfg.max_target_length
                    features = {"input_ids": source, "attention_mask": [1] * len(source),
                                "labels": target[: cfg.max_target_length - 1] + target[-1:] if too_long else target,
                                "too_long": too_long}
                    if split != "train":
                        features.update(eval_fields(cfg, refs, row, idx, limits[split]))
                    out.append(features)
                return out

            return map_rows(ds, encode_rows, desc=f"Tokenizing {split}")

        encoded = limit_long_targets(cfg, DatasetDict({s: encode_split(s, ds) for s, ds in splits.items()}))
        return encoded, {"stats": stats}

    def prompt_builder(self, tokenizer) -> PromptBuilder:
        template = get_template(self.cfg.get("template"), self.cfg.get("source_column"))
        return PromptBuilder(template, tokenizer, self.cfg.max_source_length)

    # --- model --------------------------------------------------------------------------------
    def build_model(self, model_cfg) -> nn.Module:
        return load_pretrained(model_cfg, AutoModelForSeq2SeqLM)

    def head_modules(self, model) -> list[str]:
        return []  # the LM head is tied to the embeddings: nothing outside the backbone

    # --- training and evaluation ----------------------------------------------------------------
    def metrics(self):
        return text_metrics(self.generator)

    def loss(self, model, batch) -> torch.Tensor:
        return model(**split_fields(batch)[0]).loss

    def items(self, batch) -> torch.Tensor:
        """Target tokens the loss averages over (label padding is -100)."""
        return (batch["labels"] != -100).sum()

    def evaluate(self, model, batch, metrics) -> torch.Tensor:
        return evaluate_text(model, batch, metrics, self.generator, shifted=False)

    def take_samples(self) -> list[dict]:
        return self.generator.take_samples() if self.generator else []


def source_columns(cfg, template, train) -> list[str]:
    """The columns the template reads, less the target and reference columns: what augmentation may change."""
    targets = {cfg.target_column, *reference_columns(cfg, train)}
    return [c for c in template.columns() if c not in targets]


def gen_limit(cfg, key: str) -> int | None:
    """Rows of a split to generate for: an int, 0 (none) or null (all)."""
    gen = cfg.get("generate") or {}
    if not gen.get("val_samples"):
        return 0
    return gen.get(key)
