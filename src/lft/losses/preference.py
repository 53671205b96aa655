"""Preference losses on per-sequence log-probabilities or scores (pure functions, no models).

DPO family (Rafailov et al., 2023), with h = (log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l)):
  sigmoid  -log sigmoid(beta * h)   (label_smoothing e > 0: conservative DPO, -(1-e) log s(beta h) - e log s(-beta h))
  ipo      (h - 1 / (2 beta))^2     (Azar et al., 2023), on per-token average log-probabilities
  simpo    -log sigmoid(beta * (avg log pi(y_w) - avg log pi(y_l)) - gamma)   (Meng et al., 2024): reference-free
  orpo     -avg log pi(y_w) - lambda * log sigmoid(log odds(y_w) - log odds(y_l))   (Hong et al., 2024): SFT and
           preference in one reference-free loss; odds(y) = p / (1 - p) of the per-token average p = exp(avg log pi)
  kto      unpaired rows (Ethayarajh et al., 2024): kto_loss below
Implicit rewards are beta * (log pi - log ref) (simpo: beta * avg log pi; orpo: the log odds); accuracy counts
chosen > rejected.

Reward models (Bradley-Terry): -log sigmoid(r(y_w) - r(y_l)).
"""

import math

import torch
import torch.nn.functional as F

from lft.config.schema import PREFERENCE_LOSSES

DPO_LOSSES = PREFERENCE_LOSSES  # the values of data.preference.loss, checked by the schema
REFERENCE_FREE = ("simpo", "orpo")
# Variants that compare per-token averages rather than sums (long answers would otherwise dominate).
LENGTH_NORMALIZED = ("ipo", "simpo", "orpo")
LOG_HALF = math.log(0.5)


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


def log_odds(avg_logps: torch.Tensor) -> torch.Tensor:
    """log(p / (1 - p)) of p = exp(avg_logps), stable on both sides of p = 1/2 (log1p below, expm1 above).

    A certain answer (p = 1 in floating point) would make the odds infinite: avg_logps is kept just below 0.
    """
    logp = avg_logps.float().clamp(max=-1e-6)
    log_one_minus_p = torch.where(logp < LOG_HALF, torch.log1p(-torch.exp(logp)), torch.log(-torch.expm1(logp)))
    return logp - log_one_minus_p


def orpo_loss(chosen_avg_logps: torch.Tensor, rejected_avg_logps: torch.Tensor, *, lam: float):
    """Per-pair ORPO losses, the rewards (each answer's log odds) and the chosen answer's NLL.

    Takes per-token average log-probabilities (the paper's length-normalized likelihood): the SFT term is the mean
    NLL over the chosen answer's tokens; lam = 0 leaves plain SFT on the chosen answers. No reference model.
    """
    chosen, rejected = log_odds(chosen_avg_logps), log_odds(rejected_avg_logps)
    nll = -chosen_avg_logps
    losses = nll - lam * F.logsigmoid(chosen - rejected)
    return losses, chosen.detach(), rejected.detach(), nll.detach()


def kto_loss(logps, ref_logps, kl_logps, ref_kl_logps, desirable: torch.Tensor, *, beta: float,
             desirable_weight: float = 1.0, undesirable_weight: float = 1.0):
    """Per-row KTO losses, implicit rewards beta * r, and the reference point z0 (a detached scalar).

    logps, ref_logps: summed log-probabilities of each row's own completion under the policy and the reference;
    r = logps - ref_logps. kl_logps, ref_kl_logps: the same for mismatched pairs (the row's prompt with another row's
    completion from the same batch). desirable: bool per row.

    z0, the paper's reference point KL(pi || pi_ref), is estimated per batch as in the paper and TRL: the mean of
    log pi/pi_ref over the batch's mismatched pairs, floored at 0 and detached (no gradient flows through it); per
    process and micro-batch (TRL also averages it over processes).
      desirable     lambda_D * (1 - sigmoid(beta * (r - z0)))
      undesirable   lambda_U * (1 - sigmoid(beta * (z0 - r)))
    """
    z0 = (kl_logps - ref_kl_logps).mean().clamp(min=0).detach()
    ratio = logps - ref_logps
    losses = torch.where(desirable, desirable_weight * (1 - torch.sigmoid(beta * (ratio - z0))),
                         undesirable_weight * (1 - torch.sigmoid(beta * (z0 - ratio))))
    return losses, (beta * ratio).detach(), z0


def bradley_terry_loss(chosen_scores: torch.Tensor, rejected_scores: torch.Tensor) -> torch.Tensor:
    """Per-pair -log P(chosen beats rejected) under the Bradley-Terry model."""
    return -F.logsigmoid(chosen_scores - rejected_scores)


def pair_accuracy(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """1 where chosen scores higher, 0 where lower, 0.5 on ties (a policy equal to its reference scores 0.5)."""
    return (chosen > rejected).float() + 0.5 * (chosen == rejected).float()
