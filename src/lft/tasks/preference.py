"""Learning from preference pairs: DPO-family policy tuning (`data.task: dpo`) and reward models (`reward`).

Both read the same pairs (lft/data/preference_pairs.py) and run chosen and rejected answers through the model in one
forward pass (the batch holds them side by side; the task concatenates them).

- DpoTask: a causal LM; loss only on answer tokens (`data.preference.loss`: sigmoid DPO, IPO, SimPO, ORPO; KTO reads
  unpaired rows: KtoTask in tasks/kto.py). The reference is the frozen starting point: the same model
  with its peft adapter switched off (no second copy), or else a separately loaded frozen copy of the base that
  the task's Reference holds (tasks/dpo_reference.py: never in the LightningModule, so never checkpointed). Its
  log-probabilities are computed without gradients and, with `data.preference.cache_reference`, once per pair.
- RewardTask: a sequence classifier with one score, trained with the Bradley-Terry pairwise loss; an encoder
  reads "[CLS] prompt [SEP] answer [SEP]", a decoder with a chat template the chat prompt + answer + EOS and pools
  its last token (lft/data/reward_inputs.py, which a reward from the run scores responses with as well).
Metrics: preference_accuracy (chosen scores higher; ties count half), reward_margin; DPO also chosen_logps,
rejected_logps (summed answer log-probabilities) and logp_accuracy (the policy's own per-token likelihood prefers
the chosen answer: comparable between a base model and a tuned one, unlike implicit rewards).
"""

import hashlib
import logging
from pathlib import Path

import torch
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from lft.config.errors import ConfigError
from lft.config.schema import default
from lft.data.cache import cached_encoding
from lft.data.datamodule import datamodule_for
from lft.data.labels import IGNORE
from lft.data.preference_pairs import PairEncoder, encode_pairs, load_preference_splits, parse_turns
from lft.data.reward_inputs import RewardInputs
from lft.losses.preference import (
    DPO_LOSSES,
    LENGTH_NORMALIZED,
    REFERENCE_FREE,
    bradley_terry_loss,
    dpo_loss,
    orpo_loss,
    pair_accuracy,
    sequence_logps,
)
from lft.models.loading import align_pad_token, is_encoder_decoder, load_pretrained
from lft.tasks.classification import ClassificationTask, replace_head
from lft.tasks.dpo_reference import Reference, reference_config
from lft.tasks.protocol import Encoded

log = logging.getLogger(__name__)
SIDES = ("chosen", "rejected")


class PairCollator:
    """Pads chosen and rejected rows to one length, so the task can stack them into one [2B, L] batch."""

    def __init__(self, pad_id: int, sides: tuple[str, ...] = SIDES):
        self.pad = {"input_ids": pad_id, "attention_mask": 0, "token_type_ids": 0, "labels": IGNORE}
        self.sides = sides

    def __call__(self, features: list[dict]) -> dict:
        length = max(len(f[f"{s}_input_ids"]) for f in features for s in self.sides)
        length = -(-length // 8) * 8
        batch = {}
        for key in features[0]:
            side, _, field = key.partition("_")
            if side in self.sides:
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

    def _encoded(self, tokenizer, seed: int, encoder: PairEncoder, to_features, cache_dir: str | None) -> Encoded:
        cfg = self.cfg

        def tokenize():
            return encode_pairs(cfg, load_preference_splits(cfg, seed), encoder, to_features), {}

        encoded, _ = cached_encoding(tokenize, task=type(self).__name__, data_cfg=cfg, tokenizer=tokenizer, seed=seed,
                                     cache_dir=cache_dir)
        return Encoded(datamodule_for(cfg, encoded, PairCollator(tokenizer.pad_token_id), seed))

    def evaluate(self, model, batch, metrics, encoded: Encoded) -> torch.Tensor:
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

    def take_samples(self, encoded: Encoded) -> list[dict]:
        return []  # pairs are scored, not generated


class DpoTask(_PairTask):
    name = "dpo"
    peft_task_type = "CAUSAL_LM"

    def __init__(self, data_cfg, model_cfg=None, policy_is_reference: bool = False):
        """model_cfg: the policy's starting point, which is the reference unless data.preference.reference names
        another; policy_is_reference: lft.evaluate scoring a base model (one forward, implicit rewards 0)."""
        super().__init__(data_cfg)
        pref = data_cfg.get("preference") or {}
        setting = {key: pref.get(key, default(f"data.preference.{key}")) for key in (
            "loss", "beta", "label_smoothing", "simpo_gamma", "orpo_lambda", "cache_reference")}
        self.loss_type = setting["loss"]
        self.beta = float(setting["beta"])
        self.label_smoothing = float(setting["label_smoothing"])
        self.gamma = float(setting["simpo_gamma"])
        self.orpo_lambda = float(setting["orpo_lambda"])
        if self.loss_type not in DPO_LOSSES:
            raise ConfigError(f"data.preference.loss={self.loss_type!r}: choose one of {', '.join(DPO_LOSSES)}.")
        if self.beta <= 0:
            raise ConfigError(f"data.preference.beta={self.beta} must be positive (0.1 is usual for DPO).")
        if not 0 <= self.label_smoothing < 0.5:
            raise ConfigError(f"data.preference.label_smoothing={self.label_smoothing} must be in [0, 0.5).")
        cache_file = pref.get("reference_cache_file")
        starting_point = reference_config(model_cfg, pref.get("reference")) if model_cfg is not None else None
        self.reference = Reference(starting_point, cache=bool(setting["cache_reference"]),
                                   cache_file=Path(cache_file) if cache_file else None,
                                   policy_is_reference=policy_is_reference)

    # --- data ---------------------------------------------------------------------------------
    def encode(self, tokenizer, seed: int, cache_dir: str | None = None) -> Encoded:
        encoder = PairEncoder(self.cfg, tokenizer, eos=True)
        log.info("Prompt format: %s", "chat template" if encoder.chat else "plain text")

        def features(pair):
            out = {}
            for side, answer in zip(SIDES, (pair.chosen, pair.rejected), strict=True):
                ids = pair.prompt + answer
                out.update({f"{side}_input_ids": ids, f"{side}_attention_mask": [1] * len(ids),
                            f"{side}_labels": [IGNORE] * len(pair.prompt) + answer})
            return {**out, "pair_key": pair_key(out["chosen_input_ids"], out["rejected_input_ids"])}

        return self._encoded(tokenizer, seed, encoder, features, cache_dir)

    def prompt_ids(self, tokenizer, prompt: str) -> list[int]:
        """A prompt (an HH-style dialogue or plain text) formatted as in training: for lft.generate."""
        turns = parse_turns(prompt, self.cfg.get("user_marker"), self.cfg.get("assistant_marker"))
        return PairEncoder(self.cfg, tokenizer, eos=True).prompt_ids(turns)

    # --- model --------------------------------------------------------------------------------
    def build_model(self, model_cfg, encoded: Encoded | None = None) -> nn.Module:
        if is_encoder_decoder(model_cfg):
            raise ConfigError(f"data.task=dpo needs a decoder-only model; {model_cfg.name_or_path!r} is an "
                              "encoder-decoder. Use model=smollm2_135m (or another causal LM).")
        model = load_pretrained(model_cfg, AutoModelForCausalLM)
        align_pad_token(model)
        return model

    def head_modules(self, model) -> list[str]:
        return []

    # --- training and evaluation ----------------------------------------------------------------
    def metrics(self, encoded: Encoded) -> MetricCollection:
        names = ("preference_accuracy", "reward_margin", "chosen_logps", "rejected_logps", "logp_accuracy")
        names += ("nll",) if self.loss_type == "orpo" else ()  # ORPO's SFT term
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
            ref_logps = self.reference.logps(model, batch["pair_key"], inputs, labels, logps.detach())
            ref = (ref_logps / counts.clamp(min=1)) if self.loss_type in LENGTH_NORMALIZED else ref_logps
            ref = (ref[:n], ref[n:])
        extra = {"chosen_logps": logps[:n].detach(), "rejected_logps": logps[n:].detach(),
                 "logp_accuracy": pair_accuracy(averages[:n].detach(), averages[n:].detach())}
        if self.loss_type == "orpo":
            losses, chosen, rejected, extra["nll"] = orpo_loss(policy[:n], policy[n:], lam=self.orpo_lambda)
        else:
            losses, chosen, rejected = dpo_loss(policy[:n], policy[n:], *ref, beta=self.beta,
                                                loss_type=self.loss_type, label_smoothing=self.label_smoothing,
                                                gamma=self.gamma)
        return losses.mean(), chosen, rejected, extra


class RewardTask(_PairTask):
    name = "reward"
    peft_task_type = "SEQ_CLS"

    # --- data ---------------------------------------------------------------------------------
    def encode(self, tokenizer, seed: int, cache_dir: str | None = None) -> Encoded:
        inputs = RewardInputs(self.cfg, tokenizer)  # the one encoding of a reward model's input (also for scoring)

        def features(pair):
            out = {}
            for side, answer in zip(SIDES, (pair.chosen, pair.rejected), strict=True):
                enc = inputs.features(pair.prompt, answer)
                ids = enc["input_ids"]
                out.update({f"{side}_input_ids": ids, f"{side}_attention_mask": [1] * len(ids)})
                if "token_type_ids" in enc:
                    out[f"{side}_token_type_ids"] = enc["token_type_ids"]
            return {**out, "pair_key": pair_key(out["chosen_input_ids"], out["rejected_input_ids"])}

        return self._encoded(tokenizer, seed, inputs.encoder, features, cache_dir)

    # --- model --------------------------------------------------------------------------------
    def build_model(self, model_cfg, encoded: Encoded | None = None) -> nn.Module:
        model = load_pretrained(model_cfg, AutoModelForSequenceClassification, num_labels=1,
                                id2label={0: "reward"}, label2id={"reward": 0})
        align_pad_token(model)  # decoder backbones pool the last non-pad token
        if model_cfg.get("head"):
            replace_head(model, model_cfg.head, 1)
        return model

    def head_modules(self, model) -> list[str]:
        return ClassificationTask.head_modules(self, model)

    # --- training and evaluation ----------------------------------------------------------------
    def metrics(self, encoded: Encoded) -> MetricCollection:
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
