"""Decoder-only LMs (GPT-2, Llama, SmolLM2, OPT) in two modes.

- prompt mode (text-to-text data, `data.task: seq2seq` on a decoder): input = prompt + response + EOS, where the
  prompt is the rendered `data.template`, wrapped in the tokenizer's chat template when `data.chat_template`
  says so. Labels are -100 over the prompt (unless `data.train_on_inputs`), so only response tokens carry loss;
  the EOS teaches the model to stop.
- raw-text mode (`data.task: causal_lm`): every row's `data.text_column` is tokenized, joined with EOS and cut
  into `data.block_size` blocks; every token carries loss (self-supervised).
"""

import logging
from dataclasses import dataclass
from itertools import chain
from typing import ClassVar

import torch
from datasets import DatasetDict
from omegaconf import DictConfig
from torch import nn
from transformers import AutoModelForCausalLM

from lft.config.errors import ConfigError
from lft.data.cache import cached_encoding
from lft.data.labels import IGNORE
from lft.data.packing import PackingCollator, check_packing_isolates
from lft.data.sources import load_splits, require_columns
from lft.data.templates import PromptBuilder, chat_enabled, chat_setting, get_template
from lft.data.text_to_text import encode_text_pairs, load_augmented_pairs
from lft.data.values import raw_text_columns
from lft.generation.generator import Generator, evaluate_text, split_fields, text_metrics
from lft.models.loading import align_pad_token, load_pretrained
from lft.speed.lean_loss import causal_lm_loss
from lft.tasks.protocol import Encoded
from lft.tasks.seq2seq import text_datamodule

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class CausalLMTask:
    """A decoder-only LM on text pairs (prompt mode) or on raw text, chunked into blocks (module docstring)."""

    name: ClassVar[str] = "causal_lm"
    peft_task_type: ClassVar[str] = "CAUSAL_LM"
    cfg: DictConfig
    augment: DictConfig | None = None  # the run's `augment` settings: prompt mode augments train prompts' columns

    @property
    def raw_text(self) -> bool:
        return self.cfg.task == "causal_lm"

    # --- data ---------------------------------------------------------------------------------
    def encode(self, tokenizer, seed: int, cache_dir: str | None = None) -> Encoded:
        cfg = self.cfg
        prompts = None
        if self.raw_text:
            generator = Generator(tokenizer, {}, decoder_only=True)  # raw text has no references to score
        else:
            prompts = self.prompt_builder(tokenizer)
            log.info("Prompt format: %s", "chat template" if prompts.chat else "plain template")
            generator = Generator(tokenizer, cfg.get("generate"), decoder_only=True)
        encoded, metadata = cached_encoding(lambda: self._tokenize(tokenizer, seed, prompts), task=type(self).__name__,
                                            data_cfg=cfg, tokenizer=tokenizer, seed=seed, cache_dir=cache_dir,
                                            augment=self.augment)
        packing = PackingCollator(tokenizer.pad_token_id) if cfg.get("packing") else None
        # Batches are right-padded, so prompt lengths index them; generation left-pads itself.
        datamodule = text_datamodule(cfg, encoded, tokenizer, seed, shifted=True, train_collate_fn=packing,
                                     stats=metadata.get("stats"))
        return Encoded(datamodule, generator=generator, prompts=prompts)

    def prompt_builder(self, tokenizer) -> PromptBuilder:
        """How prompts are formatted for training; lft.generate formats user prompts with it too."""
        cfg = self.cfg
        template = get_template(cfg.get("template"), cfg.get("source_column"))
        return PromptBuilder(template, tokenizer, cfg.get("max_source_length"),
                             chat=chat_enabled(chat_setting(cfg), tokenizer), decoder=True)

    def _tokenize(self, tokenizer, seed: int, prompts: PromptBuilder | None) -> tuple[DatasetDict, dict]:
        """(encoded splits, {"stats": ...}); raw text is never augmented (lft.config.validate refuses it)."""
        if self.raw_text:
            return self._encode_raw(tokenizer, seed), {}
        return self._encode_prompts(tokenizer, seed, prompts)

    def _encode_prompts(self, tokenizer, seed: int, prompts: PromptBuilder) -> tuple[DatasetDict, dict]:
        cfg = self.cfg
        splits, stats = load_augmented_pairs(cfg, seed, self.augment)
        eos = _eos_ids(tokenizer)
        train_on_inputs = bool(cfg.get("train_on_inputs", False))

        def encode_rows(rows, targets):
            prompt_ids = prompts.build_ids(rows)
            responses = tokenizer(targets, add_special_tokens=False)["input_ids"]
            out = []
            for prompt, response in zip(prompt_ids, responses, strict=True):
                response = response + eos
                too_long = cfg.max_target_length is not None and len(response) > cfg.max_target_length
                response = response[: cfg.max_target_length]
                ids = prompt + response
                labels = (list(prompt) if train_on_inputs else [IGNORE] * len(prompt)) + response
                out.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels,
                            "prompt_length": len(prompt), "too_long": too_long})
            return out

        return encode_text_pairs(cfg, splits, encode_rows), {"stats": stats}

    def _encode_raw(self, tokenizer, seed: int) -> DatasetDict:
        cfg = self.cfg
        splits = load_splits(cfg, seed, raw_text_columns(cfg))
        require_columns(splits, {"text_column": cfg.text_column})
        block = cfg.get("block_size") or 128
        sep = _eos_ids(tokenizer) if cfg.get("document_separator") is None else \
            tokenizer(cfg.document_separator, add_special_tokens=False)["input_ids"]

        def chunk(batch):
            ids = tokenizer(batch[cfg.text_column], add_special_tokens=False)["input_ids"]  # strings (data/values.py)
            stream = list(chain.from_iterable(doc + sep for doc in ids if doc))
            blocks = [stream[i: i + block] for i in range(0, len(stream) - block + 1, block)]
            if not blocks and stream:  # a batch shorter than one block keeps its tokens
                blocks = [stream]
            return {"input_ids": blocks, "attention_mask": [[1] * len(b) for b in blocks], "labels": blocks}

        # batch_size bounds the tokens dropped per batch (the tail shorter than a block).
        encoded = DatasetDict({
            s: ds.map(chunk, batched=True, batch_size=1000, remove_columns=ds.column_names, desc=f"Chunking {s}")
            for s, ds in splits.items()
        })
        for split, ds in encoded.items():
            if len(ds) == 0:
                raise ConfigError(f"data.block_size={block}: the {split} split has no text to fill a block.")
        return encoded

    # --- model --------------------------------------------------------------------------------
    def build_model(self, model_cfg, encoded: Encoded | None = None) -> nn.Module:
        model = load_pretrained(model_cfg, AutoModelForCausalLM)
        align_pad_token(model)  # GPT-2, Llama: pad with EOS (labels mask padding anyway)
        if self.cfg.get("packing"):
            check_packing_isolates(model, model.config.vocab_size)
        return model

    def head_modules(self, model) -> list[str]:
        return []  # the LM head is (usually) tied to the input embeddings

    # --- training and evaluation ----------------------------------------------------------------
    def metrics(self, encoded: Encoded):
        return text_metrics(encoded.generator)

    def loss(self, model, batch) -> torch.Tensor:
        return causal_lm_loss(model, split_fields(batch)[0])

    def items(self, batch) -> torch.Tensor:
        """Tokens the loss averages over: labels after the first position (which predicts nothing)."""
        return (batch["labels"][:, 1:] != IGNORE).sum()

    def evaluate(self, model, batch, metrics, encoded: Encoded) -> torch.Tensor:
        return evaluate_text(model, batch, metrics, encoded.generator, shifted=True)

    def take_samples(self, encoded: Encoded) -> list[dict]:
        return encoded.generator.take_samples()


def _eos_ids(tokenizer) -> list[int]:
    if tokenizer.eos_token_id is None:
        log.warning("The tokenizer has no EOS token: responses end without one, so generation runs to max_new_tokens.")
        return []
    return [tokenizer.eos_token_id]
