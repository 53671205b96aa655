"""Decoder-only LMs (GPT-2, Llama, SmolLM2, OPT) in two modes.

- prompt mode (text-to-text data, `data.task: seq2seq` on a decoder): input = prompt + response + EOS, where the
  prompt is the rendered `data.template`, wrapped in the tokenizer's chat template when `data.chat_template`
  says so. Labels are -100 over the prompt (unless `data.train_on_inputs`), so only response tokens carry loss;
  the EOS teaches the model to stop.
- raw-text mode (`data.task: causal_lm`): every row's `data.text_column` is tokenized, joined with EOS and cut
  into `data.block_size` blocks; every token carries loss (self-supervised).
"""

import logging
from functools import partial
from itertools import chain

import torch
from datasets import DatasetDict
from torch import nn
from transformers import AutoModelForCausalLM

from lft.config.errors import ConfigError
from lft.data.augment import augment_train
from lft.data.cache import cached_encoding
from lft.data.datamodule import EncodedDataModule, labelled_tokens
from lft.data.packing import PackingCollator, check_packing_isolates
from lft.data.pairs import (
    eval_fields,
    limit_long_targets,
    load_pairs,
    map_rows,
    reference_columns,
    row_target,
)
from lft.data.sources import load_splits, require_columns
from lft.data.templates import PromptBuilder, chat_enabled, get_template
from lft.data.values import raw_text_columns
from lft.generation.generator import (
    EvalCollator,
    Generator,
    evaluate_text,
    generation_order,
    split_fields,
    text_metrics,
)
from lft.models.loading import load_pretrained
from lft.speed.lean_loss import causal_lm_loss
from lft.tasks.seq2seq import gen_limit, source_columns

log = logging.getLogger(__name__)
IGNORE = -100


class CausalLMTask:
    name = "causal_lm"
    peft_task_type = "CAUSAL_LM"
    augment = None  # the run's `augment` settings (build_task): prompt mode augments train prompts' columns

    def __init__(self, data_cfg):
        self.cfg = data_cfg
        self.raw_text = data_cfg.task == "causal_lm"
        self.generator: Generator | None = None
        self.prompts: PromptBuilder | None = None  # lft.generate reuses it to format user prompts

    # --- data ---------------------------------------------------------------------------------
    def encode(self, tokenizer, seed: int, cache_dir: str | None = None) -> EncodedDataModule:
        tokenizer.padding_side = "right"  # prompt lengths index right-padded batches; generation left-pads itself
        cfg = self.cfg
        if self.raw_text:
            self.generator = Generator(tokenizer, {}, decoder_only=True)  # raw text has no references to score
        else:
            self.prompts = self.prompt_builder(tokenizer)
            log.info("Prompt format: %s", "chat template" if self.prompts.chat else "plain template")
            self.generator = Generator(tokenizer, cfg.get("generate"), decoder_only=True)
        encoded, metadata = cached_encoding(lambda: self._tokenize(tokenizer, seed), task=type(self).__name__,
                                            data_cfg=cfg, tokenizer=tokenizer, seed=seed, cache_dir=cache_dir,
                                            augment=self.augment)
        packing = PackingCollator(tokenizer.pad_token_id) if cfg.get("packing") else None
        return EncodedDataModule(encoded, EvalCollator(tokenizer), cfg.batch_size, cfg.eval_batch_size,
                                 cfg.get("num_workers", 0), seed=seed,
                                 group_by_length=cfg.get("group_by_length", True), train_collate_fn=packing,
                                 eval_order=generation_order, stats=metadata.get("stats"),
                                 row_items=partial(labelled_tokens, shifted=True))

    def prompt_builder(self, tokenizer) -> PromptBuilder:
        cfg = self.cfg
        template = get_template(cfg.get("template"), cfg.get("source_column"))
        return PromptBuilder(template, tokenizer, cfg.get("max_source_length"),
                             chat=chat_enabled(cfg.get("chat_template", "auto"), tokenizer), decoder=True)

    def _tokenize(self, tokenizer, seed: int) -> tuple[DatasetDict, dict]:
        """(encoded splits, {"stats": ...}); raw text is never augmented (lft.config.validate refuses it)."""
        return (self._encode_raw(tokenizer, seed), {}) if self.raw_text else self._encode_prompts(tokenizer, seed)

    def _encode_prompts(self, tokenizer, seed: int) -> tuple[DatasetDict, dict]:
        cfg, prompts = self.cfg, self.prompts
        splits, template = load_pairs(cfg, seed)
        splits, stats = augment_train(splits, self.augment, source_columns(cfg, template, splits["train"]), seed)
        eos = _eos_ids(tokenizer)
        limits = {"validation": gen_limit(cfg, "val_samples"), "test": gen_limit(cfg, "test_samples")}
        train_on_inputs = bool(cfg.get("train_on_inputs", False))

        def encode_split(split, ds):
            refs = reference_columns(cfg, ds)

            def encode_rows(rows, indices):
                prompt_ids = prompts.build_ids(rows)
                targets = [row_target(cfg, refs, row) for row in rows]
                responses = tokenizer(targets, add_special_tokens=False)["input_ids"]
                out = []
                for row, idx, prompt, response in zip(rows, indices, prompt_ids, responses, strict=True):
                    response = response + eos
                    too_long = cfg.max_target_length is not None and len(response) > cfg.max_target_length
                    response = response[: cfg.max_target_length]
                    ids = prompt + response
                    labels = (list(prompt) if train_on_inputs else [IGNORE] * len(prompt)) + response
                    features = {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels,
                                "prompt_length": len(prompt), "too_long": too_long}
                    if split != "train":
                        features.update(eval_fields(cfg, refs, row, idx, limits[split]))
                    out.append(features)
                return out

            return map_rows(ds, encode_rows, desc=f"Tokenizing {split}")

        encoded = limit_long_targets(cfg, DatasetDict({s: encode_split(s, ds) for s, ds in splits.items()}))
        return encoded, {"stats": stats}

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
    def build_model(self, model_cfg) -> nn.Module:
        model = load_pretrained(model_cfg, AutoModelForCausalLM)
        if model.config.pad_token_id is None:  # GPT-2, Llama: pad with EOS (labels mask padding anyway)
            model.config.pad_token_id = model.config.eos_token_id
        if model.generation_config is not None and model.generation_config.pad_token_id is None:
            model.generation_config.pad_token_id = model.config.pad_token_id
        if self.cfg.get("packing"):
            check_packing_isolates(model, model.config.vocab_size)
        return model

    def head_modules(self, model) -> list[str]:
        return []  # the LM head is (usually) tied to the input embeddings

    # --- training and evaluation ----------------------------------------------------------------
    def metrics(self):
        return text_metrics(self.generator)

    def loss(self, model, batch) -> torch.Tensor:
        return causal_lm_loss(model, split_fields(batch)[0])

    def items(self, batch) -> torch.Tensor:
        """Tokens the loss averages over: labels after the first position (which predicts nothing)."""
        return (batch["labels"][:, 1:] != IGNORE).sum()

    def evaluate(self, model, batch, metrics) -> torch.Tensor:
        return evaluate_text(model, batch, metrics, self.generator, shifted=True)

    def take_samples(self) -> list[dict]:
        return self.generator.take_samples() if self.generator else []


def _eos_ids(tokenizer) -> list[int]:
    if tokenizer.eos_token_id is None:
        log.warning("The tokenizer has no EOS token: responses end without one, so generation runs to max_new_tokens.")
        return []
    return [tokenizer.eos_token_id]
