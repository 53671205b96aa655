"""Online policy optimization, InstructGPT's step 3 (`data.task: ppo` or `rloo`) on a decoder-only LM.

Prompts come from any text data config: its `data.template` (or `source_column`, else `text_column`), rendered in
the tokenizer's chat template where `data.chat_template` says so. One training step takes one prompt batch:
 1. Rollout, under no_grad: `rl.samples_per_prompt` responses per prompt sampled with lft's batched generation
    (pure sampling at `rl.temperature`, so the log-probabilities below are those of the distribution sampled);
    their tokens' log-probabilities under the policy (PPO: and the value head's estimates) and under the
    reference: the policy with its adapter switched off (LoRA family: no second copy), else a frozen copy
    loaded once (tasks/dpo_reference.py); scores from the reward (lft/rewards).
 2. Advantages. PPO folds -rl.kl_coef * KL into per-token rewards (the score on the last token) and runs GAE on
    the value head's estimates; RLOO takes score - rl.kl_coef * summed KL per response and the leave-one-out
    baseline over each prompt's samples (why RLOO: lft/losses/policy.py rloo_advantages).
 3. `rl.ppo_epochs` passes over the rollout in shuffled minibatches of `rl.mini_batch_size` responses, one
    optimizer step each (Lightning's manual optimization: trainer.max_steps counts these updates), with the
    clipped surrogate (and PPO's clipped value loss).
The rollout lives and dies inside its training step, so no checkpoint falls inside one: `resume=` restores the
weights, optimizer, RNG (callbacks/rng_state.py) and the sampler's position like any run, and the next rollout is
the one the uninterrupted run draws.

Dropout is off through the whole step (rollout and updates): the PPO ratio then compares one network with itself
and is exactly 1 at the first update (TRL turns dropout off for the same reason).

Validation samples one response per held-out prompt, seeded by the batch's first row (the same draws of a policy
at every validation, independent of training's RNG), and reports val/reward (mean score), val/reward_ci95 (the
half-width of its 95% interval), val/kl (summed k1 KL to the reference per response), val/response_length
(tokens), val/clip_fraction (the share of tokens the clip bound in the updates since the last validation; nan
before the first; not on a test split) and val/loss = -val/reward. lft.evaluate scores the test split the same
way (a base model is its own reference: KL 0) and writes each prompt, response and reward to predictions.jsonl.
"""

import logging
from dataclasses import dataclass, replace

import torch
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from transformers import AutoModelForCausalLM

from lft.config.errors import ConfigError
from lft.data.datamodule import datamodule_for
from lft.data.policy_prompts import PolicyPrompts
from lft.data.sources import load_splits
from lft.evaluation.metrics import MeanInterval
from lft.generation.generator import Generator, stop_ids
from lft.losses.policy import (
    gae,
    kl_penalty,
    masked_whiten,
    policy_loss,
    rloo_advantages,
    token_rewards,
    value_loss,
)
from lft.models.loading import align_pad_token, is_encoder_decoder, load_pretrained, saved_module
from lft.rewards.scorers import build_reward
from lft.tasks.dpo_reference import Reference
from lft.tasks.protocol import Encoded

log = logging.getLogger(__name__)
ALGORITHMS = ("ppo", "rloo")
METRICS = ("reward", "kl", "response_length", "clip_fraction")
VALUE_HEAD = "value_head"  # one of lft.models.loading.OWN_MODULES


@dataclass(frozen=True)
class Rollout:
    """Sampled responses and what the updates need of them; rows are prompt-major (a prompt's samples together)."""

    prompt_ids: torch.Tensor  # [N, P] left-padded
    prompt_mask: torch.Tensor
    response_ids: torch.Tensor  # [N, R]
    mask: torch.Tensor  # [N, R] float: 1 up to and including the stop token
    logps: torch.Tensor  # [N, R] under the policy that sampled
    ref_logps: torch.Tensor
    scores: torch.Tensor  # [N]
    values: torch.Tensor | None = None  # PPO: the value head's estimates
    advantages: torch.Tensor | None = None
    returns: torch.Tensor | None = None


class PolicyTask:
    peft_task_type = "CAUSAL_LM"
    online = True  # FineTuneModule hands the training step to train_step (manual optimization)
    training_metrics = ("clip_fraction",)  # statistics of the updates: validation only (none on a test split)

    def __init__(self, algorithm: str, data_cfg, model_cfg, rl_cfg=None, reward_cfg=None, gradient_clip=(None, "norm"),
                 policy_is_reference: bool = False):
        """algorithm: ppo or rloo; rl_cfg, reward_cfg: the run's `rl` and `reward` (checked by lft.config.validate),
        None for the prompts alone (lft.generate formats prompts as training did, and scores nothing);
        gradient_clip: (trainer.gradient_clip_val, gradient_clip_algorithm), applied here since Lightning does not
        clip manually optimized steps; policy_is_reference: lft.evaluate scoring a base model, which is its own
        reference (KL 0, no second forward)."""
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm={algorithm!r}: one of {', '.join(ALGORITHMS)}")
        if model_cfg is not None and is_encoder_decoder(model_cfg):  # before any data loads
            raise ConfigError(f"data.task={algorithm} needs a decoder-only model; {model_cfg.name_or_path!r} is an "
                              "encoder-decoder. Use model=smollm2_135m (or another causal LM).")
        self.name = algorithm
        self.cfg, self.rl = data_cfg, rl_cfg
        self.gradient_clip = gradient_clip
        self.k = int(rl_cfg.samples_per_prompt) if rl_cfg is not None else 1
        self.reward = build_reward(reward_cfg) if reward_cfg is not None else None
        self.reference = Reference(model_cfg, cache=False, policy_is_reference=policy_is_reference)

    @property
    def ppo(self) -> bool:
        return self.name == "ppo"

    def updates_per_batch(self, batch_size: int) -> int:
        """Optimizer steps one prompt batch makes (the schedule's length when trainer.max_steps is not set)."""
        return int(self.rl.ppo_epochs) * -(-batch_size * self.k // int(self.rl.mini_batch_size))

    # --- data ---------------------------------------------------------------------------------
    def encode(self, tokenizer, seed: int, cache_dir: str | None = None) -> Encoded:
        cfg = self.cfg
        prompts = PolicyPrompts(cfg, tokenizer)
        splits = load_splits(cfg, seed, prompts.columns())
        log.info("Prompt format: %s", prompts.describe())

        def encode_rows(batch, indices):
            rows = [dict(zip(batch, values, strict=True)) for values in zip(*batch.values(), strict=True)]
            kept = [(i, prompt) for i, prompt in zip(indices, prompts.encode(rows), strict=True) if prompt is not None]
            return {"input_ids": [ids for _, (_, ids) in kept], "prompt": [text for _, (text, _) in kept],
                    "row": [i for i, _ in kept]}

        encoded = splits.map(encode_rows, batched=True, with_indices=True, remove_columns=splits["train"].column_names,
                             desc="Tokenizing prompts")
        for split in encoded:
            dropped = len(splits[split]) - len(encoded[split])
            if dropped:
                log.warning("Dropped %d of %d %s prompts: the last user turn alone is over data.max_prompt_length=%d.",
                            dropped, len(splits[split]), split, int(cfg.max_prompt_length))
        datamodule = datamodule_for(cfg, encoded, PromptCollator(tokenizer.pad_token_id), seed)
        return Encoded(datamodule, generator=Generator(tokenizer, cfg.get("generate"), decoder_only=True))

    def prompt_ids(self, tokenizer, item: dict | str) -> list[int]:
        """One prompt formatted as in training, for lft.generate (a row of the template's columns, or text)."""
        ids = PolicyPrompts(self.cfg, tokenizer).item_ids(item)
        if ids is None:
            raise ConfigError(f"The prompt's last user turn alone is over data.max_prompt_length="
                              f"{self.cfg.max_prompt_length} tokens; shorten it or raise data.max_prompt_length.")
        return ids

    # --- model --------------------------------------------------------------------------------
    def build_model(self, model_cfg, encoded: Encoded | None = None) -> nn.Module:
        model = load_pretrained(model_cfg, AutoModelForCausalLM)
        align_pad_token(model)
        if self.ppo:  # the critic: a linear head on the last hidden state, 0 at the start (no prior on the reward)
            head = nn.Linear(model.config.get_text_config().hidden_size, 1)
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
            saved = saved_module(model_cfg, VALUE_HEAD)  # a full PPO run's model/ (evaluated, or trained further)
            if saved:
                head.load_state_dict(saved)
            model.add_module(VALUE_HEAD, head)
        return model

    def head_modules(self, model) -> list[str]:
        return [VALUE_HEAD] if self.ppo else []

    # --- rollouts -----------------------------------------------------------------------------
    def forward(self, model, rollout: Rollout, rows=None, values: bool = False):
        """(log-probabilities of the response tokens at rl.temperature [n, R], value estimates or None)."""
        rows = slice(None) if rows is None else rows
        responses, mask = rollout.response_ids[rows], rollout.mask[rows]
        ids = torch.cat([rollout.prompt_ids[rows], responses], dim=1)
        attention = torch.cat([rollout.prompt_mask[rows], mask.long()], dim=1)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)  # as generate() numbers left-padded prompts
        out = model(input_ids=ids, attention_mask=attention, position_ids=positions, output_hidden_states=values)
        width = responses.shape[1]
        logits = out.logits[:, -width - 1:-1].float() / float(self.rl.temperature)  # position t predicts t + 1
        logps = torch.gather(logits, 2, responses.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
        if not values:
            return logps, None
        head = _value_head(model)
        hidden = out.hidden_states[-1][:, -width - 1:-1]
        return logps, head(hidden.to(head.weight.dtype)).squeeze(-1).float()

    @torch.no_grad()
    def rollout(self, model, batch: dict, encoded: Encoded, samples: int, critic: bool = True) -> Rollout:
        """Sample `samples` responses per prompt of a batch and score them (model in eval mode); critic: PPO's
        value estimates too (the updates need them, an evaluation does not)."""
        generator = encoded.generator
        lengths = batch["prompt_length"].tolist()
        prompts = [ids[:n] for ids, n in zip(batch["input_ids"].tolist(), lengths, strict=True) for _ in range(samples)]
        padded, responses = generator.generate_ids(
            model, prompts, max_new_tokens=int(self.rl.max_new_tokens), do_sample=True, num_beams=1,
            temperature=float(self.rl.temperature), top_k=0, top_p=1.0, repetition_penalty=1.0)
        stops = torch.tensor(stop_ids(model, generator.tokenizer), device=responses.device)
        stopped = torch.isin(responses, stops).long()
        mask = ((stopped.cumsum(-1) - stopped) == 0).float()  # no stop token before this one
        kept = [row[: int(n)] for row, n in zip(responses.tolist(), mask.sum(-1).tolist(), strict=True)]
        texts = generator.tokenizer.batch_decode(kept, skip_special_tokens=True)
        prompt_texts = [text for text in batch["prompt"] for _ in range(samples)]
        scores = self.reward(prompt_texts, texts, kept, responses.device)
        rollout = Rollout(padded["input_ids"], padded["attention_mask"], responses, mask, logps=None, ref_logps=None,
                          scores=scores)
        logps, values = self.forward(model, rollout, values=self.ppo and critic)
        if self.reference.policy_is_reference:
            ref_logps = logps
        else:
            with self.reference.frozen(model) as reference:
                ref_logps = self.forward(reference, rollout)[0]
        return replace(rollout, logps=logps * mask, ref_logps=ref_logps * mask, values=values)

    def with_advantages(self, rollout: Rollout) -> Rollout:
        rl, mask = self.rl, rollout.mask
        kl = kl_penalty(rollout.logps, rollout.ref_logps, rl.kl_estimator) * mask
        if self.ppo:
            rewards = token_rewards(rollout.scores, kl, mask, float(rl.kl_coef))
            advantages, returns = gae(rewards, rollout.values, mask, float(rl.gamma), float(rl.lam))
        else:
            sequence = rollout.scores - float(rl.kl_coef) * kl.sum(-1)
            advantages, returns = rloo_advantages(sequence, self.k)[:, None] * mask, None
        if rl.whiten_advantages:
            advantages = masked_whiten(advantages, mask)
        return replace(rollout, advantages=advantages, returns=returns)

    # --- training -----------------------------------------------------------------------------
    def train_step(self, module, batch: dict) -> None:
        """One rollout and its rl.ppo_epochs x minibatch optimizer steps (module docstring)."""
        model, rl = module.model, self.rl
        training = model.training
        model.eval()  # dropout off: see the module docstring
        try:
            rollout = self.with_advantages(self.rollout(model, batch, module.encoded, self.k))
            optimizer, scheduler = module.optimizers(), module.lr_schedulers()
            n = len(rollout.scores)
            losses, clipped = [], []
            for _ in range(int(rl.ppo_epochs)):
                for rows in torch.randperm(n).split(int(rl.mini_batch_size)):
                    rows = rows.to(rollout.mask.device)
                    mask = rollout.mask[rows]
                    logps, values = self.forward(model, rollout, rows, values=self.ppo)
                    loss, clip_fraction = policy_loss(logps, rollout.logps[rows], rollout.advantages[rows], mask,
                                                      float(rl.clip_range))
                    if self.ppo:
                        loss = loss + float(rl.vf_coef) * value_loss(values, rollout.values[rows],
                                                                     rollout.returns[rows], mask,
                                                                     float(rl.value_clip_range))
                    optimizer.zero_grad()
                    module.manual_backward(loss)
                    value, algorithm = self.gradient_clip
                    if value:
                        module.clip_gradients(optimizer, gradient_clip_val=value, gradient_clip_algorithm=algorithm)
                    optimizer.step()
                    scheduler.step()
                    losses.append(loss.detach())
                    clipped.append(clip_fraction)
                    # Validation ran in inference mode, which made the metric's states inference tensors.
                    with torch.inference_mode():
                        module.val_metrics["clip_fraction"].update(clip_fraction)
        finally:
            model.train(training)
        kl = kl_penalty(rollout.logps, rollout.ref_logps, "k1").sum(-1)
        n_prompts = len(batch["prompt_length"])
        module.log_dict({"train/loss": torch.stack(losses).mean(), "train/reward": rollout.scores.mean(),
                         "train/kl": kl.mean(), "train/response_length": rollout.mask.sum(-1).mean(),
                         "train/clip_fraction": torch.stack(clipped).mean()}, prog_bar=True, batch_size=n_prompts)

    def loss(self, model, batch) -> torch.Tensor:
        raise TypeError(f"data.task={self.name} trains online: FineTuneModule calls train_step (manual optimization)")

    def items(self, batch) -> int:
        return len(batch["prompt_length"])

    # --- evaluation ---------------------------------------------------------------------------
    def metrics(self, encoded: Encoded) -> MetricCollection:
        metrics = {n: MeanMetric() for n in METRICS}
        return MetricCollection({**metrics, "reward_ci95": MeanInterval()}, compute_groups=False)

    def evaluate(self, model, batch, metrics, encoded: Encoded) -> torch.Tensor:
        device = batch["input_ids"].device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(int(batch["row"][0]))
            rollout = self.rollout(model, batch, encoded, samples=1, critic=False)
        metrics["reward"].update(rollout.scores)
        metrics["reward_ci95"].update(rollout.scores)
        metrics["kl"].update(kl_penalty(rollout.logps, rollout.ref_logps, "k1").sum(-1))
        metrics["response_length"].update(rollout.mask.sum(-1))
        tokenizer = encoded.generator.tokenizer
        for row, prompt, ids, n, score in zip(batch["row"].tolist(), batch["prompt"], rollout.response_ids.tolist(),
                                             rollout.mask.sum(-1).tolist(), rollout.scores.tolist(), strict=True):
            encoded.generator.samples.append({"row": row, "prompt": prompt, "reward": score,
                                              "response": tokenizer.decode(ids[: int(n)], skip_special_tokens=True)})
        return -rollout.scores.mean()

    def take_samples(self, encoded: Encoded) -> list[dict]:
        return encoded.generator.take_samples()


class PromptCollator:
    """Right-pads prompts (the rollout re-pads them on the left); the rendered prompt texts ride along for the
    reward."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, features: list[dict]) -> dict:
        width = max(len(f["input_ids"]) for f in features)
        return {"input_ids": torch.tensor([f["input_ids"] + [self.pad_id] * (width - len(f["input_ids"]))
                                           for f in features]),
                "prompt_length": torch.tensor([len(f["input_ids"]) for f in features]),
                "row": torch.tensor([f["row"] for f in features]),
                "prompt": [f["prompt"] for f in features]}


def _value_head(model) -> nn.Module:
    """The value head, wherever a strategy put it (peft keeps a trainable copy of it in modules_to_save)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base, VALUE_HEAD)
