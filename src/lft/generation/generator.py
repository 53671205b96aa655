"""Text generation for evaluation, `lft.evaluate` and `lft.generate`: batching, padding, decoding, scoring.

Generation is slow (one forward pass per new token), so evaluation generates only for rows flagged `generate`
when the data was encoded: the first `data.generate.val_samples` validation rows and `test_samples` test rows.
Evaluation batches come in `generation_order` (flagged rows first, longest prompt first), so a batch's prompts
have similar lengths; generation starts from the prompt states the loss forward computed (lft.generation.prompt_states),
and the weights are bf16 while generating where that is fast (`data.generate.bf16`, lft.speed.precision).
"""

from collections.abc import Callable
from contextlib import nullcontext
from functools import partial

import torch

from lft.config.errors import ConfigError
from lft.data.labels import IGNORE
from lft.evaluation.metrics import (
    GENERATION_METRICS,
    collection,
    generation_metrics,
    perplexity_metrics,
    update_generation,
)
from lft.generation.prompt_states import PromptStates
from lft.speed.lean_loss import causal_lm_forward
from lft.speed.precision import bf16_weights, fast_bf16

# Row fields that ride along in evaluation batches but are not model inputs.
EVAL_FIELDS = ("generate", "references", "reference_columns", "prompt_length", "row")


def stop_ids(model, tokenizer) -> list[int]:
    """Training appends the tokenizer's EOS; converted checkpoints (GGUF) may name another in generation_config."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    configured = configured if isinstance(configured, list) else [configured]
    return sorted({i for i in [tokenizer.eos_token_id, *configured] if i is not None})


class Generator:
    def __init__(self, tokenizer, gen_cfg, decoder_only: bool):
        self.tokenizer = tokenizer
        self.cfg = gen_cfg or {}
        self.decoder_only = decoder_only
        self.samples: list[dict] = []  # every generated row of the current evaluation epoch
        unknown = set(self.cfg.get("metrics") or []) - set(GENERATION_METRICS)
        if unknown:
            raise ConfigError(f"data.generate.metrics names {sorted(unknown)}; choose from {', '.join(GENERATION_METRICS)} "
                              "(e.g. data.generate.metrics=[rouge,bleu]).")

    @property
    def enabled(self) -> bool:
        return bool(self.cfg.get("val_samples"))

    def settings(self) -> dict:
        cfg = self.cfg
        out = {"max_new_tokens": cfg.get("max_new_tokens", 64), "num_beams": cfg.get("num_beams", 1),
               "do_sample": bool(cfg.get("do_sample", False))}
        if out["do_sample"]:  # greedy/beam search warn about sampling settings they ignore
            out.update(temperature=cfg.get("temperature", 1.0), top_p=cfg.get("top_p", 1.0), top_k=cfg.get("top_k", 50))
        if cfg.get("repetition_penalty"):
            out["repetition_penalty"] = cfg.repetition_penalty
        return out

    @torch.no_grad()
    def generate(self, model, prompts: list[list[int]], reuse: Callable[[torch.dtype | None], dict] | None = None
                 ) -> list[str]:
        """Continue each prompt (token ids); returns only the new text.

        reuse(dtype): generate arguments that carry the prompts' states already computed (PromptStates).
        """
        out = self.generate_ids(model, prompts, reuse)[1]
        return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]

    @torch.no_grad()
    def generate_ids(self, model, prompts: list[list[int]], reuse: Callable[[torch.dtype | None], dict] | None = None,
                     **overrides) -> tuple[dict, torch.Tensor]:
        """(the padded prompt batch, the new token ids [N, new]): `generate` before decoding. overrides: generate
        settings over data.generate's (online RL samples its rollouts with its own)."""
        tok = self.tokenizer
        # Decoders continue from the last position; the side is given per call, so the shared tokenizer keeps its own.
        side = "left" if self.decoder_only else "right"
        batch = tok.pad({"input_ids": prompts}, return_tensors="pt", padding_side=side)
        device = next(model.parameters()).device
        batch = {k: v.to(device) for k, v in batch.items()}
        setting = self.cfg.get("bf16", "auto")
        bf16 = fast_bf16(device) if setting == "auto" else setting
        settings = {**self.settings(), **overrides}
        reused = reuse(torch.bfloat16 if bf16 else None) if reuse and settings["num_beams"] == 1 else {}
        with bf16_weights(model) if bf16 else nullcontext():
            out = model.generate(**batch, **settings, **reused, pad_token_id=tok.pad_token_id,
                                 eos_token_id=stop_ids(model, tok))
        return batch, out[:, batch["input_ids"].shape[1]:] if self.decoder_only else out

    def wants(self, fields: dict) -> bool:
        """Whether this evaluation batch has rows to generate for."""
        return self.enabled and "generate" in fields and bool(fields["generate"].any())

    def evaluate(self, model, batch: dict, fields: dict, metrics, states: PromptStates | None = None) -> None:
        """Generate for the flagged rows of an evaluation batch and update ROUGE/BLEU.

        states: what the loss forward computed for this batch; generation starts from it instead of a prefill.
        """
        if not self.enabled or "generate" not in fields:
            return
        rows = [i for i, flag in enumerate(fields["generate"].tolist()) if flag]
        if not rows:
            return
        ids, mask = batch["input_ids"], batch["attention_mask"]
        lengths = fields["prompt_length"] if self.decoder_only else mask.sum(-1)
        prompts = [ids[i, : int(lengths[i])].tolist() for i in rows]  # batches are right-padded
        reuse = partial(states.generate_kwargs, model, rows, [len(p) for p in prompts]) if states else None
        preds = self.generate(model, prompts, reuse)
        refs = [fields["references"][i] for i in rows]
        update_generation(metrics, preds, refs)
        names = fields.get("reference_columns")  # text-to-text rows name them; chat rows score the last answer
        for i, prompt_ids, pred, ref in zip(rows, prompts, preds, refs, strict=True):
            prompt = self.tokenizer.decode(prompt_ids, skip_special_tokens=not self.decoder_only)
            sample = {"row": int(fields["row"][i]), "prompt": prompt, "reference": ref[0], "references": list(ref)}
            self.samples.append({**sample, **({"reference_columns": list(names[i])} if names else {}),
                                 "prediction": pred})

    def take_samples(self) -> list[dict]:
        samples, self.samples = sorted(self.samples, key=lambda s: s["row"]), []
        return samples


class EvalCollator:
    """Right-pads a batch to a multiple of 8 (labels with IGNORE), whatever the tokenizer's own padding_side:
    prompt lengths index the rows from the left. List-valued fields (references) ride along as lists."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, features: list[dict]) -> dict:
        lists = {k: [f.pop(k) for f in features] for k in ("references", "reference_columns") if k in features[0]}
        labels = [f.pop("labels") for f in features] if "labels" in features[0] else None
        batch = self.tokenizer.pad(features, padding=True, pad_to_multiple_of=8, return_tensors="pt",
                                   padding_side="right")
        if labels is not None:
            width = -(-max(len(row) for row in labels) // 8) * 8
            batch["labels"] = torch.tensor([row + [IGNORE] * (width - len(row)) for row in labels], dtype=torch.int64)
        batch.update(lists)
        return batch


def generation_order(split) -> list[int]:
    """Evaluation row order: rows flagged for generation first, then the rest; longest first within each.

    Generation left-pads a batch's prompts to the longest and every new token attends over that width, so
    prompts of similar length waste less; the loss forward pads less too. Rows keep their `row` id, so
    samples and predictions still come back in dataset order (Generator.take_samples).
    """
    if "generate" not in split.column_names:
        return list(range(len(split)))
    flags = split["generate"]
    full = [len(ids) for ids in split["input_ids"]]
    prompt = split["prompt_length"] if "prompt_length" in split.column_names else full  # encoder-decoders: the input
    return sorted(range(len(split)), key=lambda i: (not flags[i], -(prompt[i] if flags[i] else full[i])))


def split_fields(batch: dict) -> tuple[dict, dict]:
    """(model inputs, evaluation-only fields) of a batch."""
    inputs = {k: v for k, v in batch.items() if k not in EVAL_FIELDS}
    return inputs, {k: v for k, v in batch.items() if k in EVAL_FIELDS}


def text_metrics(generator):
    """Perplexity always; ROUGE/BLEU when the task generates during evaluation."""
    gen = {}
    if generator is None:
        gen = generation_metrics()
    elif generator.enabled:
        gen = generation_metrics(generator.cfg.get("metrics") or GENERATION_METRICS[:2])
    return collection({**perplexity_metrics(), **gen})


def evaluate_text(model, batch: dict, metrics, generator, shifted: bool) -> torch.Tensor:
    """Loss and perplexity on every batch, generation metrics on the rows flagged for generation.

    shifted: decoder-only labels are shifted inside the model, so their first position predicts nothing.
    """
    inputs, fields = split_fields(batch)
    width = inputs["input_ids"].shape[1]
    if shifted:
        loss, cache = causal_lm_forward(model, inputs, use_cache=generator.wants(fields))
        states = PromptStates(cache=cache, width=width)
    else:
        output = model(**inputs)
        loss, states = output.loss, PromptStates.of(output, width)
        del output  # the logits (batch x length x vocabulary) need not outlive the loss
    labels = inputs["labels"][:, 1:] if shifted else inputs["labels"]
    metrics["perplexity"].update(loss, (labels != IGNORE).sum())
    generator.evaluate(model, inputs, fields, metrics, states)
    return loss
