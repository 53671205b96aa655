"""Preference losses on per-sequence log-probabilities or scores (pure functions, no models).

DPO family (Rafailov et al., 2023), with h = (log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l)):
  sigmoid  -log sigmoid(beta * h)   (label_smoothing e > 0: conservative DPO, -(1-e) log s(beta h) - e log s(-beta h))
  ipo      (h - 1 / (2 beta))^2     (Azar et al., 2023), on per-token average log-probabilities
  simpo    -log sigmoid(beta * (avg log pi(y_w) - avg log pi(y_l)) - gamma)   (Meng et al., 2024): reference-free
Implicit rewards are beta * (log pi - log ref) (simpo: beta * avg log pi); accuracy counts chosen > rejected.

Reward models (Bradley-Terry): -log sigmoid(r(y_w) - r(y_l)).
"""

import torch
import torch.nn.functional as F

DPO_LOSSES = ("sigmoid", "ipo", "simpo")
REFERENCE_FREE = ("simpo",)
# Variants that compare per-token averages rather than sums (long answers would otherwise dominate).
LENGTH_NORMALIZED = ("ipo", "simpo")


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of log p(label), number of labelled tokens) per row of a causal LM; labels == -100 do not count.

    logits [N, T', V] (T' >= T: prompt tuning prepends virtual tokens), labels [N, T] aligned with the input.
    """
    logits = logits[:, -labels.shape[1]:][:, :-1].float()  # position t predicts token t + 1
    labels = labels[:, 1:]
    mask = labels != -100
    picked = torch.gather(logits, 2, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    token_logps = picked - torch.logsumexp(logits, dim=-1)
    return (token_logps * mask).sum(-1), mask.sum(-1)


def dpo_loss(chosen_logps, rejected_logps, ref_chosen_logps=None, ref_rejected_logps=None, *,
             beta: float, loss_type: str = "sigmoid", label_smoothing: float = 0.0, gamma: float = 0.0):
    """Per-pair losses and implicit rewards (chosen, rejected) of one DPO-family variant.

    Pass log-probabilities as the variant expects them: sums for sigmoid, per-token averages for ipo and simpo
    (LENGTH_NORMALIZED). simpo ignores the reference (REFERENCE_FREE).
    """
    if loss_type in REFERENCE_FREE:
        chosen_rewards, rejected_rewards = beta * chosen_logps, beta * rejected_logps
        losses = -F.logsigmoid(chosen_rewards - rejected_rewards - gamma)
        return losses, chosen_rewards.detach(), rejected_rewards.detach()
    chosen_ratio = chosen_logps - ref_chosen_logps
    rejected_ratio = rejected_logps - ref_rejected_logps
    h = chosen_ratio - rejected_ratio
    if loss_type == "sigmoid":
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)
    elif loss_type == "ipo":
        losses = (h - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(f"unknown DPO loss {loss_type!r}; choose one of {', '.join(DPO_LOSSES)}")
    return losses, (beta * chosen_ratio).detach(), (beta * rejected_ratio).detach()


def bradley_terry_loss(chosen_scores: torch.Tensor, rejected_scores: torch.Tensor) -> torch.Tensor:
    """Per-pair -log P(chosen beats rejected) under the Bradley-Terry model."""
    return -F.logsigmoid(chosen_scores - rejected_scores)


def pair_accuracy(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """1 where chosen scores higher, 0 where lower, 0.5 on ties (a policy equal to its reference scores 0.5)."""
    return (chosen > rejected).float() + 0.5 * (chosen == rejected).float()
