"""The checks across keys of online RL (data.task=ppo or rloo), run by lft.config.validate before anything loads.

The reward's own files (a run folder's labels) are read where the reward is built (lft/rewards/scorers.py).
"""

from lft.config.errors import ConfigError

ONLINE_TASKS = ("ppo", "rloo")
RL_METRICS = ("val/reward", "val/kl", "val/response_length", "val/clip_fraction", "val/loss")


def check_rl(cfg) -> None:
    task = cfg.data.get("task")
    if task not in ONLINE_TASKS:
        return
    rl = cfg.rl
    check_reward(cfg)
    if task == "rloo" and rl.samples_per_prompt < 2:
        raise ConfigError(f"rl.samples_per_prompt={rl.samples_per_prompt}: RLOO's baseline for a sample is the "
                          "mean of its prompt's other samples, so it needs >= 2 (e.g. rl.samples_per_prompt=4).")
    if cfg.trainer.get("accumulate_grad_batches", 1) != 1:
        raise ConfigError(f"trainer.accumulate_grad_batches={cfg.trainer.accumulate_grad_batches} with data.task="
                          f"{task}: each rollout is split into rl.mini_batch_size updates already; set "
                          "trainer.accumulate_grad_batches=1 and choose rl.mini_batch_size instead.")
    if cfg.strategy.name == "distill":
        raise ConfigError(f"strategy=distill with data.task={task}: the policy learns from rewards, not from a "
                          "teacher's outputs; use strategy=lora, qlora, full or freeze.")
    if cfg.monitor.metric not in RL_METRICS:
        raise ConfigError(f"monitor.metric={cfg.monitor.metric} is not reported by data.task={task}; follow one of "
                          f"{', '.join(RL_METRICS)}: data.monitor.metric=val/reward data.monitor.mode=max.")


def check_reward(cfg) -> None:
    """Exactly one reward where responses are scored: training online, and lft.evaluate on prompts."""
    task, reward = cfg.data.get("task"), cfg.reward
    if task not in ONLINE_TASKS:
        return
    if bool(reward.get("run")) == bool(reward.get("fn")):
        raise ConfigError(f"data.task={task} needs one reward: reward.run=<an lft reward-model or classifier run "
                          "folder> (with reward.label=<label> for a classifier) or reward.fn={_target_:module.name,...} "
                          f"(a callable); {'both are' if reward.get('run') else 'neither is'} set.")
    if reward.get("label") and not reward.get("run"):
        raise ConfigError("reward.label names a label of the classifier in reward.run; set reward.run or drop "
                          "reward.label.")
