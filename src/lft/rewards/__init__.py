"""Rewards for online policy optimization (data.task=ppo or rloo): what scores a sampled response.

`reward.fn`: a Python callable named by `_target_` (rules.py ships TokenShare); `reward.run`: an lft run folder,
either a reward model (data.task=reward: its one score) or a classifier and one of its labels (`reward.label`:
the label's probability). build_reward (scorers.py) picks one; the task calls it on each rollout.
"""
