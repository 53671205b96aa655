"""Text-to-text with an encoder-decoder (T5, flan-T5, BART): template(source columns) -> target.

The encoder reads the rendered template (e.g. "Summarize the following conversation.\n\n{dialogue}\n\nSummary: "),
the decoder learns the target; label padding is -100, so it carries no loss.
"""

from dataclasses import dataclass
from functools import partial
from typing import ClassVar

import torch
from datasets import DatasetDict
from omegaconf import DictConfig
from torch import nn
from transformers import AutoModelForSeq2SeqLM

from lft.data.cache import cached_encoding
from lft.data.datamodule import datamodule_for, labelled_tokens
from lft.data.labels import IGNORE
from lft.data.templates import PromptBuilder, get_template
from lft.data.text_to_text import encode_text_pairs, load_augmented_pairs
from lft.generation.generator import (
    EvalCollator,
    Generator,
    evaluate_text,
    generation_order,
    split_fields,
    text_metrics,
)
from lft.models.loading import load_pretrained
from lft.tasks.protocol import Encoded


@dataclass(frozen=True, eq=False)
class Seq2SeqTask:
    """Encoder-decoder text-to-text: the encoder reads the prompt, the decoder learns the target."""

    name: ClassVar[str] = "seq2seq"
    peft_task_type: ClassVar[str] = "SEQ_2_SEQ_LM"
    cfg: DictConfig
    augment: DictConfig | None = None  # the run's `augment` settings: applied to train sources before tokenizing

    # --- data ---------------------------------------------------------------------------------
    def encode(self, tokenizer, seed: int, cache_dir: str | None = None) -> Encoded:
        cfg = self.cfg
        prompts = self.prompt_builder(tokenizer)
        generator = Generator(tokenizer, cfg.get("generate"), decoder_only=False)
        encoded, metadata = cached_encoding(lambda: self._tokenize(tokenizer, seed, prompts), task=type(self).__name__,
                                            data_cfg=cfg, tokenizer=tokenizer, seed=seed, cache_dir=cache_dir,
                                            augment=self.augment)
        datamodule = text_datamodule(cfg, encoded, tokenizer, seed, shifted=False, stats=metadata.get("stats"))
        return Encoded(datamodule, generator=generator, prompts=prompts)

    def _tokenize(self, tokenizer, seed: int, prompts: PromptBuilder) -> tuple[DatasetDict, dict]:
        cfg = self.cfg
        splits, stats = load_augmented_pairs(cfg, seed, self.augment)

        def encode_rows(rows, targets):
            sources = prompts.build_ids(rows)
            targets = tokenizer(targets, add_special_tokens=True)["input_ids"]
            out = []
            for source, target in zip(sources, targets, strict=True):
                too_long = cfg.max_target_length is not None and len(target) > cfg.max_target_length
                out.append({"input_ids": source, "attention_mask": [1] * len(source),
                            "labels": target[: cfg.max_target_length - 1] + target[-1:] if too_long else target,
                            "too_long": too_long})
            return out

        return encode_text_pairs(cfg, splits, encode_rows), {"stats": stats}

    def prompt_builder(self, tokenizer) -> PromptBuilder:
        template = get_template(self.cfg.get("template"), self.cfg.get("source_column"))
        return PromptBuilder(template, tokenizer, self.cfg.max_source_length)

    # --- model --------------------------------------------------------------------------------
    def build_model(self, model_cfg, encoded: Encoded | None = None) -> nn.Module:
        return load_pretrained(model_cfg, AutoModelForSeq2SeqLM)

    def head_modules(self, model) -> list[str]:
        return []  # the LM head is tied to the embeddings: nothing outside the backbone

    # --- training and evaluation ----------------------------------------------------------------
    def metrics(self, encoded: Encoded):
        return text_metrics(encoded.generator)

    def loss(self, model, batch) -> torch.Tensor:
        return model(**split_fields(batch)[0]).loss

    def items(self, batch) -> torch.Tensor:
        """Target tokens the loss averages over (label padding is -100)."""
        return (batch["labels"] != IGNORE).sum()

    def evaluate(self, model, batch, metrics, encoded: Encoded) -> torch.Tensor:
        return evaluate_text(model, batch, metrics, encoded.generator, shifted=False)

    def take_samples(self, encoded: Encoded) -> list[dict]:
        return encoded.generator.take_samples()



def text_datamodule(cfg, splits, tokenizer, seed: int, shifted: bool, **options):
    """The datamodule of encoded text pairs: batches right-padded (labels with IGNORE), evaluation rows to generate
    for first (generation_order), each row's labelled tokens counted (shifted: a decoder's first predicts none)."""
    return datamodule_for(cfg, splits, EvalCollator(tokenizer), seed, eval_order=generation_order,
                          row_items=partial(labelled_tokens, shifted=shifted), **options)
