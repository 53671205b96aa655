"""One reward per sampled response, from the `reward` config: a callable, or a trained lft run folder.

Every reward is called as reward(prompts, responses, response_ids) -> a float tensor [N] on the policy's device:
prompts are the rendered prompt texts (before any chat template), responses the decoded new text, response_ids
the new tokens up to and including the stop token.

A run folder's model is loaded once, on first use, in eval mode and without gradients; it never joins the
LightningModule, so it is neither trained nor checkpointed.
"""

import json
import logging
from pathlib import Path

import torch
from hydra.utils import get_object, instantiate
from omegaconf import OmegaConf

from lft.config.errors import ConfigError
from lft.data.reward_inputs import RewardInputs
from lft.runs import layout

log = logging.getLogger(__name__)


def build_reward(reward_cfg):
    """The reward the config names (lft.config.validate checked that it names exactly one)."""
    if reward_cfg.get("fn"):
        return FunctionReward(reward_cfg.fn)
    return RunReward(Path(str(reward_cfg.run)), reward_cfg.get("label"), reward_cfg.get("text", "full"))


class FunctionReward:
    """reward.fn: a `_target_` callable. A class is built once with the other keys as arguments, then called per
    rollout; a function is called per rollout with them."""

    def __init__(self, fn_cfg):
        target = fn_cfg.get("_target_")
        try:
            obj = get_object(target)
        except Exception as err:
            raise ConfigError(f"reward.fn._target_={target!r} cannot be imported ({type(err).__name__}: {err}); "
                              "name a callable as module.name (e.g. lft.rewards.rules.TokenShare).") from None
        self.fn = instantiate(fn_cfg) if isinstance(obj, type) else instantiate(fn_cfg, _partial_=True)
        if not callable(self.fn):
            raise ConfigError(f"reward.fn._target_={target!r} built a {type(self.fn).__name__}, which cannot be called.")

    def __call__(self, prompts, responses, response_ids, device) -> torch.Tensor:
        scores = self.fn(prompts=prompts, responses=responses, response_ids=response_ids)
        return torch.as_tensor(scores, dtype=torch.float32, device=device).reshape(len(responses))


class RunReward:
    """A trained lft sequence classifier: a reward model's score, or the probability of `label`.

    text: what a classifier reads; `full` the prompt followed by the response (as TRL's sentiment example scores
    query + response), `response` the response alone. A reward model (one output) reads (prompt, response) as
    RewardTask encoded its (prompt, answer) pairs, under the run's own data settings (lft/data/reward_inputs.py:
    chat template and dialogue turns, EOS, truncation)."""

    def __init__(self, run: Path, label: str | None, text: str = "full"):
        self.run, self.text = run, text
        config = _saved_config(run)
        names = [config["id2label"][k] for k in sorted(config.get("id2label") or {"0": "score"}, key=int)]
        self.is_reward_model = len(names) == 1
        if self.is_reward_model and label is not None:
            raise ConfigError(f"reward.label={label!r}: {run} is a reward model with one score, not a classifier; "
                              "drop reward.label.")
        if not self.is_reward_model and label not in names:
            raise ConfigError(f"reward.label={label!r} is not a label of the classifier in {run} (labels: "
                              f"{', '.join(names)}); set reward.label to the one whose probability rewards.")
        self.index = 0 if self.is_reward_model else names.index(label)
        self.data = OmegaConf.load(run / layout.CONFIG).data  # the run's: a reward model's input format
        self.max_length = int(self.data.get("max_length") or 512)
        self.model = self.tokenizer = self.inputs = None

    def load(self, device) -> None:
        from transformers import AutoTokenizer

        from lft.runs.folder import load_run_model

        self.model = load_run_model(self.run, merge=True).eval().to(device)
        for param in self.model.parameters():
            param.requires_grad_(False)
        weights = self.run / (layout.MODEL if (self.run / layout.MODEL).is_dir() else layout.ADAPTER)
        self.tokenizer = AutoTokenizer.from_pretrained(weights)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.is_reward_model:
            self.inputs = RewardInputs(self.data, self.tokenizer)
        log.info("Reward: %s from %s.", "the reward model's score" if self.is_reward_model
                 else f"P({self.model.config.id2label[self.index]})", self.run)

    @torch.no_grad()
    def __call__(self, prompts, responses, response_ids, device) -> torch.Tensor:
        if self.model is None:
            self.load(device)
        if self.is_reward_model:  # right-padded, as RewardTask's batches (a decoder pools its last non-pad token)
            features = [self.inputs.score_features(p, r) for p, r in zip(prompts, responses, strict=True)]
            inputs = self.tokenizer.pad(features, padding_side="right", return_tensors="pt")
        else:
            texts = responses if self.text == "response" else [p + r for p, r in zip(prompts, responses, strict=True)]
            inputs = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=True,
                                    return_tensors="pt")
        logits = self.model(**inputs.to(device)).logits.float()
        return logits[:, 0] if self.is_reward_model else logits.softmax(-1)[:, self.index]


def _saved_config(run: Path) -> dict:
    """The run's saved model config (labels), read without loading weights."""
    for folder in (layout.MODEL, layout.ADAPTER):
        path = run / folder / "config.json"
        if path.exists():
            return json.loads(path.read_text())
    raise ConfigError(f"reward.run={str(run)!r} is not a finished lft run (no model/ or adapter/ config.json); "
                      "give the folder a `python -m lft.train` run with data.task=classification or reward printed.")
