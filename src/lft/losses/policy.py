"""Online policy-optimization losses on per-token tensors (pure functions, no models): PPO and RLOO.

Every tensor is [N, T] over the N sampled responses' T generated tokens, with `mask` 1 on the response's own
tokens (up to and including its stop token) and 0 on the padding after it.

- KL to the reference, per token, from log-probabilities of the sampled tokens (Schulman, "Approximating KL
  divergence", 2020): k1 = log pi - log ref (unbiased, can be negative), k3 = (r - 1) - log r with
  r = ref / pi (unbiased, always >= 0, lower variance). Both are 0 where the policy equals the reference.
- PPO (Schulman et al., 2017; Ouyang et al., 2022): the KL penalty folded into per-token rewards, the score at
  the response's last token; GAE (Schulman et al., 2016) gives advantages and value targets; the clipped
  surrogate max(-A r, -A clip(r, 1-e, 1+e)) with r = pi / pi_old; a clipped value loss.
- RLOO (Ahmadian et al., 2024; Kool et al., 2019): see `rloo_advantages`.
"""

import torch

KL_ESTIMATORS = ("k1", "k3")


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Zero mean, unit variance over the masked entries (PPO's advantage normalization); 0 off the mask."""
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    return (values - mean) * torch.rsqrt(var + eps) * mask


def kl_penalty(logps: torch.Tensor, ref_logps: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(pi || ref) from the sampled tokens' log-probabilities (module docstring)."""
    log_ratio = logps - ref_logps
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        return torch.expm1(-log_ratio) + log_ratio  # (ref/pi - 1) - log(ref/pi)
    raise ValueError(f"unknown KL estimator {estimator!r}; choose one of {', '.join(KL_ESTIMATORS)}")


def token_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """PPO's per-token rewards: -kl_coef * KL on every response token, plus the sequence's score on its last."""
    rewards = -kl_coef * kl * mask
    last = (mask.sum(-1).long() - 1).clamp(min=0)  # responses are contiguous from position 0
    rewards[torch.arange(len(scores), device=scores.device), last] += scores
    return rewards


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns) by generalized advantage estimation; the value after the last token is 0.

    delta_t = r_t + gamma V_{t+1} - V_t;  A_t = delta_t + gamma lam A_{t+1};  returns = A + V.
    """
    values = values * mask
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    # A step past the last token (or into padding) has no value and no advantage to carry back.
    following = torch.cat([mask[:, 1:], torch.zeros_like(mask[:, :1])], dim=1)
    next_values = torch.cat([values[:, 1:], torch.zeros_like(values[:, :1])], dim=1) * following
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_values[:, t] - values[:, t]
        running = delta + gamma * lam * running * following[:, t]
        advantages[:, t] = running
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def policy_loss(logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                clip_range: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(PPO's clipped surrogate loss, the share of tokens where clipping bound), token-level masked means.

    At the rollout's own policy (ratio 1) the loss is -mean(A) and its gradient the plain policy gradient.
    """
    ratio = torch.exp(logps - old_logps)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clip_fraction = masked_mean((clipped > unclipped).float(), mask)
    return loss, clip_fraction.detach()


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip_range: float) -> torch.Tensor:
    """Clipped value loss: 0.5 * max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2), masked mean."""
    clipped = old_values + torch.clamp(values - old_values, -clip_range, clip_range)
    return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)


def rloo_advantages(rewards: torch.Tensor, samples_per_prompt: int) -> torch.Tensor:
    """REINFORCE leave-one-out advantages: each sample's reward minus the mean of its prompt's other samples.

    rewards [N] hold each prompt's k = samples_per_prompt samples consecutively. Why RLOO rather than GRPO: the
    leave-one-out baseline does not depend on the sample it is subtracted from, so the policy gradient stays
    unbiased; GRPO's group mean includes the sample itself (a biased baseline, scaled by (k-1)/k) and divides
    by the group's standard deviation, which with the few samples per prompt a CPU or small GPU affords is noisy,
    blows up when a group's rewards nearly tie, and weights prompts by how easy they are. RLOO needs k >= 2.
    """
    if samples_per_prompt < 2:
        raise ValueError("RLOO needs at least 2 samples per prompt (the others are each sample's baseline)")
    grouped = rewards.view(-1, samples_per_prompt)
    baseline = (grouped.sum(-1, keepdim=True) - grouped) / (samples_per_prompt - 1)
    return (grouped - baseline).view(-1)
