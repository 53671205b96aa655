"""KTO (`data.task=dpo data.preference.loss=kto`, Ethayarajh et al., 2024): a policy from unpaired rows.

Each row is a prompt, a completion and whether it is desirable (data/unpaired.py: such rows, or pairs split into
two). The loss (losses/preference.py: kto_loss) compares each row's implicit reward r = log pi/pi_ref with a
reference point z0, the policy's KL from the reference estimated on the batch itself: every prompt with the
previous row's completion (rotated by one within the batch, as TRL does), so the mismatched completions are the
same set the rewards are measured on. The policy scores those mismatched pairs without gradients (z0 is detached);
the reference scores both in one forward. Its log-probabilities are not cached: the pairing changes with the batch.
Batches need at least two rows (one row would be its own mismatched pair).

Everything else is DpoTask's: the model, the prompt format, the reference (adapter off, or a frozen copy).
Metrics: preference_accuracy and reward_margin read unpaired rows through the label's sign: a desirable row counts
as right when its implicit reward beta * r is above 0, an undesirable one when below (ties half; 0.5 for a policy
equal to its reference), and the margin is the mean of beta * r signed the same way; desirable_reward,
undesirable_reward (mean beta * r of each kind) and kl (the batch's z0 estimate).
"""

import logging

import torch
from torchmetrics import MeanMetric, MetricCollection

from lft.config.errors import ConfigError
from lft.config.schema import default
from lft.data.cache import cached_encoding
from lft.data.datamodule import datamodule_for
from lft.data.labels import IGNORE
from lft.data.preference_pairs import PairEncoder
from lft.data.unpaired import encode_unpaired, load_unpaired_splits
from lft.losses.preference import kto_loss, pair_accuracy, sequence_logps
from lft.tasks.preference import DpoTask, PairCollator
from lft.tasks.protocol import Encoded

log = logging.getLogger(__name__)
SEQUENCES = ("completion", "kl")  # each row's own completion, and its prompt with the batch's previous completion


class KtoCollator:
    """Pads each row's sequence and its mismatched KL sequence (cut to max_length) to one length."""

    def __init__(self, pad_id: int, max_length: int):
        self.pad, self.max_length = PairCollator(pad_id, sides=SEQUENCES), max_length

    def __call__(self, features: list[dict]) -> dict:
        prompts = [f["input_ids"][:f["prompt_length"]] for f in features]
        completions = [f["input_ids"][f["prompt_length"]:] for f in features]
        rows = []
        for i, prompt in enumerate(prompts):
            row = {"desirable": features[i]["desirable"]}
            mismatched = completions[i - 1][:self.max_length - len(prompt)]  # i = 0 takes the last row's
            for name, completion in zip(SEQUENCES, (completions[i], mismatched), strict=True):
                ids = prompt + completion
                row.update({f"{name}_input_ids": ids, f"{name}_attention_mask": [1] * len(ids),
                            f"{name}_labels": [IGNORE] * len(prompt) + completion})
            rows.append(row)
        return self.pad(rows)


class KtoTask(DpoTask):
    def __init__(self, data_cfg, model_cfg=None, policy_is_reference: bool = False):
        super().__init__(data_cfg, model_cfg, policy_is_reference=policy_is_reference)
        pref = data_cfg.get("preference") or {}
        self.weights = {label: float(pref.get(key, default(f"data.preference.{key}")))
                        for label, key in ((True, "kto_desirable_weight"), (False, "kto_undesirable_weight"))}
        for key in ("batch_size", "eval_batch_size"):
            if int(data_cfg[key]) < 2:
                raise ConfigError(f"data.{key}={data_cfg[key]} with data.preference.loss=kto: KTO estimates its "
                                  "reference point from mismatched prompt/completion pairs within a batch, which "
                                  f"needs at least 2 rows; set data.{key}=2 or more.")

    # --- data ---------------------------------------------------------------------------------
    def encode(self, tokenizer, seed: int, cache_dir: str | None = None) -> Encoded:
        cfg = self.cfg
        encoder = PairEncoder(cfg, tokenizer, eos=True)

        def tokenize():
            return encode_unpaired(cfg, load_unpaired_splits(cfg, seed), encoder), {}

        encoded, _ = cached_encoding(tokenize, task=type(self).__name__, data_cfg=cfg, tokenizer=tokenizer, seed=seed,
                                     cache_dir=cache_dir)
        self._log_balance(encoded["train"]["desirable"])
        return Encoded(datamodule_for(cfg, encoded, KtoCollator(tokenizer.pad_token_id, encoder.max_length), seed))

    def _log_balance(self, labels: list[bool]) -> None:
        """The paper suggests weights with lambda_D n_D / (lambda_U n_U) in [1, 4/3]."""
        n_d, n_u = sum(labels), len(labels) - sum(labels)
        ratio = self.weights[True] * n_d / max(self.weights[False] * n_u, 1e-12)
        log.log(logging.INFO if 1 <= ratio <= 4 / 3 else logging.WARNING,
                "KTO train rows: %d desirable, %d undesirable; kto_desirable_weight * n_D / (kto_undesirable_weight * "
                "n_U) = %.2f (the paper suggests 1 to 4/3).", n_d, n_u, ratio)

    # --- training and evaluation ----------------------------------------------------------------
    def metrics(self, encoded: Encoded) -> MetricCollection:
        names = ("preference_accuracy", "reward_margin", "desirable_reward", "undesirable_reward", "kl")
        return MetricCollection({n: MeanMetric() for n in names}, compute_groups=False)

    def items(self, batch) -> int:
        return len(batch["desirable"])  # the loss averages over rows

    def loss(self, model, batch) -> torch.Tensor:
        return self.forward(model, batch)[0]

    def forward(self, model, batch):
        """(mean loss, rewards beta * r per row, the z0 estimate)."""
        own = {f: batch[f"completion_{f}"] for f in ("input_ids", "attention_mask")}
        mismatched = {f: batch[f"kl_{f}"] for f in ("input_ids", "attention_mask")}
        labels = torch.cat([batch["completion_labels"], batch["kl_labels"]])
        logps = sequence_logps(model(**own).logits, batch["completion_labels"])[0]
        with torch.no_grad():  # z0 carries no gradient
            kl_logps = sequence_logps(model(**mismatched).logits, batch["kl_labels"])[0]
        both = {f: torch.cat([own[f], mismatched[f]]) for f in own}
        ref = self.reference.logps(model, None, both, labels, torch.cat([logps.detach(), kl_logps]))
        n = len(logps)
        desirable = batch["desirable"].bool()
        losses, rewards, z0 = kto_loss(logps, ref[:n], kl_logps, ref[n:], desirable, beta=self.beta,
                                       desirable_weight=self.weights[True], undesirable_weight=self.weights[False])
        return losses.mean(), rewards, desirable, z0

    def evaluate(self, model, batch, metrics, encoded: Encoded) -> torch.Tensor:
        loss, rewards, desirable, z0 = self.forward(model, batch)
        signed = torch.where(desirable, rewards, -rewards)
        metrics["preference_accuracy"].update(pair_accuracy(signed, torch.zeros_like(signed)))
        metrics["reward_margin"].update(signed)
        for name, rows in (("desirable_reward", desirable), ("undesirable_reward", ~desirable)):
            if rows.any():
                metrics[name].update(rewards[rows])
        metrics["kl"].update(z0)
        return loss
