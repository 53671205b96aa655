"""Learning from preference pairs: DPO-family policy tuning (`data.task: dpo`) and reward models (`reward`).

Both read the same pairs (lft/data/preference.py) and run chosen and rejected answers through the model in one
forward pass (the batch holds them side by side; the task concatenates them).

- DpoTask: a causal LM; loss only on answer tokens. The reference is the frozen starting point: the same model
  with its peft adapter switched off (no second copy), or else a separately loaded frozen copy of the base that
  lives on the task (never in the LightningModule, so never checkpointed nor counted trainable). Its
  log-probabilities are computed without gradients and, with `data.preference.cache_reference`, once per pair.
- RewardTask: a sequence classifier with one score, trained with the Bradley-Terry pairwise loss; an encoder
  reads "[CLS] prompt [SEP] answer [SEP]", a decoder the (chat) prompt + answer + EOS and pools its last token.
Metrics: preference_accuracy (chosen scores higher; ties count half), reward_margin; DPO also chosen_logps,
rejected_logps (summed answer log-probabilities) and logp_accuracy (the policy's own per-token likelihood prefers
the chosen answer: comparable between a base model and a tuned one, unlike implicit rewards).
"""

import hashlib
import logging
from contextlib import contextmanager
from pathlib import Path

import torch
from omegaconf import OmegaConf
from peft import PeftModel
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from lft.config.errors import ConfigError
from lft.data.cache import cached_encoding
from lft.data.datamodule import EncodedDataModule
from lft.data.preference import PairEncoder, encode_pairs, load_preference_splits, parse_turns
from lft.data.templates import chat_enabled
from lft.losses.preference import (
    DPO_LOSSES,
    LENGTH_NORMALIZED,
    REFERENCE_FREE,
    bradley_terry_loss,
    dpo_loss,
    pair_accuracy,
    sequence_logps,
)
from lft.models.loading import is_encoder_decoder, load_pretrained
from lft.tasks.classification import ClassificationTask, replace_head

log = logging.getLogger(__name__)
IGNORE = -100
SIDES = ("chosen", "rejected")


class PairCollator:
    """Pads chosen and rejected rows to one length, so the task can stack them into one [2B, L] batch."""

    def __init__(self, pad_id: int):
        self.pad = {"input_ids": pad_id, "attention_mask": 0, "token_type_ids": 0, "labels": IGNORE}

    def __call__(self, features: list[dict]) -> dict:
        length = max(len(f[f"{s}_input_ids"]) for f in features for s in SIDES)
        length = -(-length // 8) * 8
        batch = {}
        for key in features[0]:
            side, _, field = key.partition("_")
            if side in SIDES:
                rows = [f[key] + [self.pad[field]] * (length - len(f[key])) for f in features]
            else:
                rows = [f[key] for f in features]
            batch[key] = torch.tensor(rows)
        return batch


def stacked(batch: dict, fields: tuple[str, ...]) -> dict:
    """{field: cat(chosen_field, rejected_field)}: one forward over both answers."""
    return {f: torch.cat([batch[f"chosen_{f}"], batch[f"rejected_{f}"]]) for f in fields if f"chosen_{f}" in batch}


def pair_key(chosen_ids: list[int], rejected_ids: list[int]) -> int:
    """A 63-bit content hash of a tokenized pair: reference log-probabilities are cached under it."""
    digest = hashlib.blake2b(repr((chosen_ids, rejected_ids)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


class _PairTask:
    def __init__(self, data_cfg):
        self.cfg = data_cfg
        self.model_cfg = None

    def _datamodule(self, tokenizer, seed: int, encoder: PairEncoder, to_features,
                    cache_dir: str | None) -> EncodedDataModule:
        cfg = self.cfg

        def tokenize():
            return encode_pairs(cfg, load_preference_splits(cfg, seed), encoder, to_features), {}

        encoded, _ = cached_encoding(tokenize, task=type(self).__name__, data_cfg=cfg, tokenizer=tokenizer, seed=seed,
                                     cache_dir=cache_dir)
        return EncodedDataModule(encoded, PairCollator(tokenizer.pad_token_id), cfg.batch_size, cfg.eval_batch_size,
                                 cfg.get("num_workers", 0), seed=seed,
                                 group_by_length=cfg.get("group_by_length", True))

    def evaluate(self, model, batch, metrics) -> torch.Tensor:
        loss, chosen, rejected, extra = self.forward(model, batch)
        metrics["preference_accuracy"].update(pair_accuracy(chosen, rejected))
        metrics["reward_margin"].update(chosen - rejected)
        for name, values in extra.items():
            metrics[name].update(values)
        return loss

    def loss(self, model, batch) -> torch.Tensor:
        return self.forward(model, batch)[0]

    def items(self, batch) -> int:
        return len(batch["pair_key"])  # the loss averages over pairs


class DpoTask(_PairTask):
    name = "dpo"
    peft_task_type = "CAUSAL_LM"

    def __init__(self, data_cfg):
        super().__init__(data_cfg)
        pref = data_cfg.get("preference") or {}
        self.loss_type = pref.get("loss", "sigmoid")
        self.beta = float(pref.get("beta", 0.1))
        self.label_smoothing = float(pref.get("label_smoothing", 0.0))
        self.gamma = float(pref.get("simpo_gamma", 0.5))
        self.cache_reference = bool(pref.get("cache_reference", True))
        self.reference_path = pref.get("reference")
        self.cache_file = Path(pref["reference_cache_file"]) if pref.get("reference_cache_file") else None
        # lft.evaluate sets it for a base model: the policy is its own reference (one forward, rewards 0).
        self.policy_is_reference = False
        if self.loss_type not in DPO_LOSSES:
            raise ConfigError(f"data.preference.loss={self.loss_type!r}: choose one of {', '.join(DPO_LOSSES)}.")
        if self.beta <= 0:
            raise ConfigError(f"data.preference.beta={self.beta} must be positive (0.1 is usual for DPO).")
        if not 0 <= self.label_smoothing < 0.5:
            raise ConfigError(f"data.preference.label_smoothing={self.label_smoothing} must be in [0, 0.5).")
        self.reference: nn.Module | None = None  # frozen base for non-peft policies, loaded on first use
        self.reference_cache: dict[int, tuple[float, float]] | None = None  # pair_key -> summed log-probs

    # --- data ---------------------------------------------------------------------------------
    def encode(self, tokenizer, seed: int, cache_dir: str | None = None) -> EncodedDataModule:
        tokenizer.padding_side = "right"
        encoder = PairEncoder(self.cfg, tokenizer, eos=True)
        log.info("Prompt format: %s", "chat template" if encoder.chat else "plain text")

        def features(pair):
            out = {}
            for side, answer in zip(SIDES, (pair.chosen, pair.rejected), strict=True):
                ids = pair.prompt + answer
                out.update({f"{side}_input_ids": ids, f"{side}_attention_mask": [1] * len(ids),
                            f"{side}_labels": [IGNORE] * len(pair.prompt) + answer})
            return {**out, "pair_key": pair_key(out["chosen_input_ids"], out["rejected_input_ids"])}

        return self._datamodule(tokenizer, seed, encoder, features, cache_dir)

    def prompt_ids(self, tokenizer, prompt: str) -> list[int]:
        """A prompt (an HH-style dialogue or plain text) formatted as in training: for lft.generate."""
        turns = parse_turns(prompt, self.cfg.get("user_marker"), self.cfg.get("assistant_marker"))
        return PairEncoder(self.cfg, tokenizer, eos=True).prompt_ids(turns)

    # --- model --------------------------------------------------------------------------------
    def build_model(self, model_cfg) -> nn.Module:
        if self.model_cfg is None:  # the first model built is the starting point, i.e. the reference
            self.model_cfg = reference_config(model_cfg, self.reference_path)
        if is_encoder_decoder(model_cfg):
            raise ConfigError(f"data.task=dpo needs a decoder-only model; {model_cfg.name_or_path!r} is an "
                              "encoder-decoder. Use model=smollm2_135m (or another causal LM).")
        model = load_pretrained(model_cfg, AutoModelForCausalLM)
        if model.config.pad_token_id is None:
            model.config.pad_token_id = model.config.eos_token_id
        return model

    def head_modules(self, model) -> list[str]:
        return []

    # --- training and evaluation ----------------------------------------------------------------
    def metrics(self) -> MetricCollection:
        names = ("preference_accuracy", "reward_margin", "chosen_logps", "rejected_logps", "logp_accuracy")
        return MetricCollection({n: MeanMetric() for n in names}, compute_groups=False)

    def forward(self, model, batch):
        inputs = stacked(batch, ("input_ids", "attention_mask"))
        labels = stacked(batch, ("labels",))["labels"]
        logps, counts = sequence_logps(model(**inputs).logits, labels)
        n = len(batch["pair_key"])
        averages = logps / counts.clamp(min=1)
        policy = averages if self.loss_type in LENGTH_NORMALIZED else logps
        ref = (None, None)
        if self.loss_type not in REFERENCE_FREE:
            ref_logps = self.reference_logps(model, batch, inputs, labels, logps.detach())
            ref = (ref_logps / counts.clamp(min=1)) if self.loss_type in LENGTH_NORMALIZED else ref_logps
            ref = (ref[:n], ref[n:])
        losses, chosen, rejected = dpo_loss(policy[:n], policy[n:], *ref, beta=self.beta, loss_type=self.loss_type,
                                            label_smoothing=self.label_smoothing, gamma=self.gamma)
        extra = {"chosen_logps": logps[:n].detach(), "rejected_logps": logps[n:].detach(),
                 "logp_accuracy": pair_accuracy(averages[:n].detach(), averages[n:].detach())}
        return losses.mean(), chosen, rejected, extra

    @torch.no_grad()
    def reference_logps(self, model, batch, inputs, labels, policy_logps) -> torch.Tensor:
        """Summed answer log-probabilities under the reference, [chosen..., rejected...]: cached, or one forward."""
        keys = batch["pair_key"].tolist()
        n = len(keys)
        cache = self._cache()
        if cache is not None and all(k in cache for k in keys):
            values = torch.tensor([cache[k] for k in keys], device=labels.device, dtype=policy_logps.dtype)
            return torch.cat([values[:, 0], values[:, 1]])
        if self.policy_is_reference:
            logps = policy_logps
        else:
            with self.reference_model(model) as reference:
                logps = sequence_logps(reference(**inputs).logits, labels)[0]
        if cache is not None:
            cache.update(zip(keys, zip(logps[:n].tolist(), logps[n:].tolist(), strict=True), strict=True))
            self._save_cache()
        return logps

    def _cache(self) -> dict | None:
        if not self.cache_reference:
            return None
        if self.reference_cache is None:
            self.reference_cache = {}
            if self.cache_file and self.cache_file.exists():
                saved = torch.load(self.cache_file, weights_only=True)  # plain data: nothing to run
                if saved.get("reference") == self._reference_name():
                    self.reference_cache = saved["logps"]
                    log.info("DPO reference log-probabilities of %d pairs read from %s.", len(saved["logps"]),
                             self.cache_file)
                else:
                    log.warning("%s holds another reference's log-probabilities (%s); recomputing.", self.cache_file,
                                saved.get("reference"))
        return self.reference_cache

    def _save_cache(self) -> None:
        if self.cache_file:
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"reference": self._reference_name(), "logps": self.reference_cache}, self.cache_file)

    def _reference_name(self) -> str:
        cfg = self.model_cfg
        return f"{cfg.name_or_path}:{cfg.get('gguf_file') or ''}" if cfg is not None else ""

    @contextmanager
    def reference_model(self, model):
        """The frozen starting point, in eval mode (no dropout): adapter off, or the separate frozen copy."""
        if isinstance(model, PeftModel):
            training = model.training
            model.eval()
            try:
                with model.disable_adapter():
                    yield model
            finally:
                model.train(training)
            return
        if self.reference is None:
            log.info("DPO reference: a frozen copy of %s (the policy has no adapter to switch off).",
                     self.model_cfg.name_or_path)
            self.reference = self.build_reference()
        device = next(model.parameters()).device
        if next(self.reference.parameters()).device != device:  # Lightning moves the policy only
            self.reference.to(device)
        yield self.reference

    def build_reference(self) -> nn.Module:
        reference = load_pretrained(self.model_cfg, AutoModelForCausalLM).eval()
        for param in reference.parameters():
            param.requires_grad_(False)
        return reference


def reference_config(model_cfg, override=None):
    """The DPO reference's model config: `override` (a folder or Hub id), else the base an lft run started from
    (when `model_cfg` points at a run's model/ folder, as lft.evaluate does for full fine-tunes), else model_cfg."""
    from lft.runs import layout
    from lft.runs.folder import load_run_config

    if override:
        return OmegaConf.merge(model_cfg, {"name_or_path": str(override), "gguf_file": None})
    folder = Path(str(model_cfg.name_or_path))
    if folder.name == layout.MODEL and (folder.parent / layout.CONFIG).exists():
        return load_run_config(folder.parent).model
    return model_cfg


class RewardTask(_PairTask):
    name = "reward"
    peft_task_type = "SEQ_CLS"

    # --- data ---------------------------------------------------------------------------------
    def encode(self, tokenizer, seed: int, cache_dir: str | None = None) -> EncodedDataModule:
        tokenizer.padding_side = "right"
        chat = chat_enabled(self.cfg.get("chat_template", "auto"), tokenizer)
        # Plain text: the tokenizer's own pair format ([CLS] prompt [SEP] answer [SEP]); chat: prompt + answer + EOS.
        reserve = 0 if chat else tokenizer.num_special_tokens_to_add(pair=True)
        encoder = PairEncoder(self.cfg, tokenizer, eos=chat, reserve=reserve, plain_special_tokens=False)

        def features(pair):
            out = {}
            for side, answer in zip(SIDES, (pair.chosen, pair.rejected), strict=True):
                if encoder.chat:
                    enc = {"input_ids": pair.prompt + answer}
                else:  # the fitted texts again, now with the tokenizer's own pair specials (and token types)
                    enc = tokenizer(tokenizer.decode(pair.prompt), tokenizer.decode(answer), truncation="longest_first",
                                    max_length=encoder.max_length)
                ids = enc["input_ids"]
                out.update({f"{side}_input_ids": ids, f"{side}_attention_mask": [1] * len(ids)})
                if "token_type_ids" in enc:
                    out[f"{side}_token_type_ids"] = enc["token_type_ids"]
            return {**out, "pair_key": pair_key(out["chosen_input_ids"], out["rejected_input_ids"])}

        return self._datamodule(tokenizer, seed, encoder, features, cache_dir)

    # --- model --------------------------------------------------------------------------------
    def build_model(self, model_cfg) -> nn.Module:
        model = load_pretrained(model_cfg, AutoModelForSequenceClassification, num_labels=1,
                                id2label={0: "reward"}, label2id={"reward": 0})
        if model.config.pad_token_id is None:  # decoder backbones pool the last non-pad token
            model.config.pad_token_id = model.config.eos_token_id
        if model_cfg.get("head"):
            replace_head(model, model_cfg.head, 1)
        return model

    def head_modules(self, model) -> list[str]:
        return ClassificationTask.head_modules(self, model)

    # --- training and evaluation ----------------------------------------------------------------
    def metrics(self) -> MetricCollection:
        names = ("preference_accuracy", "reward_margin", "chosen_reward", "rejected_reward")
        return MetricCollection({n: MeanMetric() for n in names}, compute_groups=False)

    def forward(self, model, batch):
        inputs = stacked(batch, ("input_ids", "attention_mask", "token_type_ids"))
        scores = model(**inputs).logits.squeeze(-1).float()
        n = len(batch["pair_key"])
        chosen, rejected = scores[:n], scores[n:]
        loss = bradley_terry_loss(chosen, rejected).mean()
        chosen, rejected = chosen.detach(), rejected.detach()
        return loss, chosen, rejected, {"chosen_reward": chosen, "rejected_reward": rejected}
