"""ORPO and KTO losses against scalar implementations written from the papers, and their limiting cases."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lft.losses.preference import kto_loss, log_odds, orpo_loss, sequence_logps


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def orpo_reference(avg_chosen: float, avg_rejected: float, lam: float) -> float:
    """Hong et al. (2024), eqs. 2-7: L_SFT + lambda * L_OR, odds(y|x) = P / (1 - P), P the per-token average."""
    p_w, p_l = math.exp(avg_chosen), math.exp(avg_rejected)
    odds_ratio = (p_w / (1 - p_w)) / (p_l / (1 - p_l))
    return -avg_chosen - lam * math.log(_sigmoid(math.log(odds_ratio)))


def kto_reference(logps, ref_logps, kl_logps, ref_kl_logps, desirable, beta, weight_d, weight_u) -> list[float]:
    """Ethayarajh et al. (2024), eq. 8: L = E[lambda_y - v(x, y)], z0 = max(0, mean KL over mismatched pairs)."""
    z0 = max(0.0, float(np.mean(np.asarray(kl_logps) - np.asarray(ref_kl_logps))))
    losses = []
    for logp, ref, good in zip(logps, ref_logps, desirable, strict=True):
        r = logp - ref
        value = weight_d * _sigmoid(beta * (r - z0)) if good else weight_u * _sigmoid(beta * (z0 - r))
        losses.append((weight_d if good else weight_u) - value)
    return losses


@pytest.mark.parametrize("lam", [0.0, 0.1, 1.0])
def test_orpo_matches_the_paper(lam):
    g = torch.Generator().manual_seed(0)
    chosen = -3 * torch.rand(32, generator=g, dtype=torch.float64) - 1e-3  # per-token averages: log p in (-3, 0)
    rejected = -3 * torch.rand(32, generator=g, dtype=torch.float64) - 1e-3
    losses, reward_c, reward_r, nll = orpo_loss(chosen, rejected, lam=lam)
    expected = [orpo_reference(c, r, lam) for c, r in zip(chosen.tolist(), rejected.tolist(), strict=True)]
    np.testing.assert_allclose(losses.numpy(), expected, rtol=1e-5)
    odds = [math.log(math.exp(c) / (1 - math.exp(c))) for c in chosen.tolist()]
    np.testing.assert_allclose(reward_c.numpy(), odds, rtol=1e-5)
    torch.testing.assert_close(nll, -chosen)
    assert reward_r.shape == reward_c.shape


def test_orpo_without_lambda_is_the_chosen_answers_mean_nll():
    """lambda = 0: per row, exactly the token-mean cross-entropy over the chosen answer's labelled tokens."""
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 7, 13, generator=g)
    labels = torch.tensor([[-100, -100, 3, 4, 5, 6, 7], [-100, 1, 2, -100, -100, -100, -100],
                           [-100, -100, -100, -100, 9, 10, 11]])
    logps, counts = sequence_logps(logits, labels)
    losses = orpo_loss(logps / counts, torch.full((3,), -2.0), lam=0.0)[0]
    per_row = [F.cross_entropy(logits[b, :-1], labels[b, 1:], ignore_index=-100) for b in range(3)]
    torch.testing.assert_close(losses, torch.stack(per_row))


def test_log_odds_is_finite_and_exact_near_certainty():
    avg = torch.tensor([-60.0, -2.0, -0.6931471805599453, -1e-3, -1e-5, 0.0])
    out = log_odds(avg)
    assert torch.isfinite(out).all()
    for a, value in zip(avg.tolist()[:-1], out.tolist()[:-1], strict=True):
        p = math.exp(a)
        assert value == pytest.approx(math.log(p) - math.log1p(-p), rel=1e-4, abs=1e-6)
    assert out[2].item() == pytest.approx(0.0, abs=1e-6)  # p = 1/2: even odds


@pytest.mark.parametrize("beta,weight_d,weight_u", [(0.1, 1.0, 1.0), (0.5, 1.0, 1.33), (2.0, 0.7, 1.0)])
def test_kto_matches_the_paper(beta, weight_d, weight_u):
    rng = np.random.default_rng(0)
    logps, ref_logps = -10 * rng.random(16), -10 * rng.random(16)
    kl_logps = -10 * rng.random(16)
    ref_kl_logps = kl_logps - rng.normal(1.0, 2.0, 16)  # a positive mean KL: z0 > 0
    desirable = rng.random(16) < 0.5
    losses, rewards, z0 = kto_loss(*map(torch.tensor, (logps, ref_logps, kl_logps, ref_kl_logps, desirable)),
                                   beta=beta, desirable_weight=weight_d, undesirable_weight=weight_u)
    expected = kto_reference(logps, ref_logps, kl_logps, ref_kl_logps, desirable, beta, weight_d, weight_u)
    np.testing.assert_allclose(losses.numpy(), expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(rewards.numpy(), beta * (logps - ref_logps))
    assert z0.item() == pytest.approx(float(np.mean(kl_logps - ref_kl_logps)))


def test_kto_reference_point_is_floored_at_zero_and_carries_no_gradient():
    logps = torch.tensor([-5.0, -6.0], requires_grad=True)
    kl_logps = torch.tensor([-9.0, -9.0], requires_grad=True)
    ref_kl = torch.tensor([-1.0, -2.0])  # the policy likes the mismatched pairs less: a negative estimate
    losses, _, z0 = kto_loss(logps, torch.tensor([-4.0, -7.0]), kl_logps, ref_kl, torch.tensor([True, False]),
                             beta=0.5)
    assert z0.item() == 0.0
    expected = [1 - _sigmoid(0.5 * -1.0), 1 - _sigmoid(0.5 * -1.0)]  # r = -1 (desirable), r = +1 (undesirable)
    np.testing.assert_allclose(losses.detach().numpy(), expected, rtol=1e-6)
    losses.sum().backward()
    assert kl_logps.grad is None and logps.grad is not None


def test_kto_with_the_policy_as_its_reference_is_half_of_each_weight():
    logps = torch.tensor([-3.0, -11.0, -7.5, -2.0])
    kl_logps = torch.tensor([-8.0, -4.0, -6.0, -9.0])
    desirable = torch.tensor([True, False, True, False])
    losses, rewards, z0 = kto_loss(logps, logps.clone(), kl_logps, kl_logps.clone(), desirable, beta=0.3,
                                   desirable_weight=1.0, undesirable_weight=1.5)
    assert z0.item() == 0.0 and rewards.abs().max().item() == 0.0
    torch.testing.assert_close(losses, torch.tensor([0.5, 0.75, 0.5, 0.75]))  # lambda_y * (1 - sigmoid(0))
