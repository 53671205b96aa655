"""Online RL settings that cannot work are refused by lft.config.validate, before any data or weights load."""

import pytest

from lft.config.errors import ConfigError
from lft.config.validate import validate

FN = "+reward.fn={_target_:lft.rewards.rules.TokenShare,token_id:5}"
WATCH = ("data.monitor.metric=val/reward", "data.monitor.mode=max")


@pytest.mark.parametrize("overrides,message", [
    (("data.task=ppo", *WATCH), "needs one reward"),
    (("data.task=ppo", FN, "reward.run=somewhere", *WATCH), "both are set"),
    (("data.task=rloo", FN, "reward.label=positive", *WATCH), "reward.label names a label"),
    (("data.task=rloo", FN, "rl.samples_per_prompt=1", *WATCH), "needs >= 2"),
    (("data.task=ppo", FN, "trainer.accumulate_grad_batches=2", *WATCH), "rl.mini_batch_size"),
    (("data.task=ppo", FN), "monitor.metric=val/accuracy is not reported"),
    (("data.task=ppo", FN, "strategy=distill", *WATCH), "learns from rewards"),
    (("data.task=ppo", FN, "rl.clip_range=1.5", *WATCH), r"rl.clip_range=1.5 must be a number in \(0, 1\)"),
    (("data.task=ppo", FN, "rl.kl_estimator=k2", *WATCH), "rl.kl_estimator='k2' must be one of k1, k3"),
    (("data.task=ppo", FN, "rl.gamma=1.5", *WATCH), "rl.gamma=1.5 must be a number in"),
    (("data.task=ppo", "reward.fn=not_a_target", *WATCH), "reward.fn='not_a_target' must be"),
    (("data.task=ppo", FN, "+rl.kl_coeff=0.1", *WATCH), "did you mean rl.kl_coef"),
])
def test_bad_rl_settings_are_refused_before_loading(make_cfg, overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(make_cfg(*overrides), "train")


def test_good_rl_settings_pass(make_cfg):
    validate(make_cfg("data.task=rloo", FN, *WATCH), "train")


def test_scoring_a_policy_on_prompts_needs_a_reward(make_cfg):
    with pytest.raises(ConfigError, match="data.task=ppo needs one reward"):
        validate(make_cfg("data.task=ppo", config="evaluate"), "evaluate")
    validate(make_cfg("data.task=ppo", FN, config="evaluate"), "evaluate")
