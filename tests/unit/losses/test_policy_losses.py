"""lft.losses.policy against independent references written from the papers' formulas: plain numpy loops over
rows and tokens (no masking tricks, no vectorized torch), on fixed random tensors with ragged responses."""

import math

import numpy as np
import pytest
import torch

from lft.losses.policy import (
    gae,
    kl_penalty,
    masked_whiten,
    policy_loss,
    rloo_advantages,
    token_rewards,
    value_loss,
)

N, T = 4, 6
LENGTHS = [6, 3, 1, 4]  # tokens each response has before its padding


def _fixed():
    g = torch.Generator().manual_seed(0)
    logps = -torch.rand(N, T, generator=g, dtype=torch.float64) * 3
    old = logps + 0.3 * torch.randn(N, T, generator=g, dtype=torch.float64)
    ref = logps + 0.5 * torch.randn(N, T, generator=g, dtype=torch.float64)
    values = torch.randn(N, T, generator=g, dtype=torch.float64)
    old_values = values + 0.4 * torch.randn(N, T, generator=g, dtype=torch.float64)
    scores = torch.randn(N, generator=g, dtype=torch.float64)
    mask = torch.tensor([[1.0] * n + [0.0] * (T - n) for n in LENGTHS], dtype=torch.float64)
    return logps, old, ref, values, old_values, scores, mask


def _tokens(row: int) -> range:
    return range(LENGTHS[row])


def test_kl_estimators_match_their_formulas():
    logps, _, ref, *_ = _fixed()
    for i in range(N):
        for t in range(T):
            lp, lr = float(logps[i, t]), float(ref[i, t])
            assert float(kl_penalty(logps, ref, "k1")[i, t]) == pytest.approx(lp - lr)
            r = math.exp(lr - lp)
            assert float(kl_penalty(logps, ref, "k3")[i, t]) == pytest.approx((r - 1) - math.log(r))
    assert (kl_penalty(logps, ref, "k3") >= 0).all()
    with pytest.raises(ValueError, match="k2"):
        kl_penalty(logps, ref, "k2")


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 1.0), (0.99, 0.0)])
def test_gae_over_ragged_responses_matches_the_recursion(gamma, lam):
    logps, _, ref, values, _, scores, mask = _fixed()
    kl = kl_penalty(logps, ref, "k1")
    rewards = token_rewards(scores, kl, mask, kl_coef=0.2)
    advantages, returns = gae(rewards, values, mask, gamma, lam)
    for i in range(N):
        n = LENGTHS[i]
        r = [-0.2 * float(kl[i, t]) for t in range(n)]
        r[-1] += float(scores[i])  # the score arrives with the last token
        v = [float(values[i, t]) for t in range(n)] + [0.0]  # nothing follows the last token
        expected, running = [0.0] * n, 0.0
        for t in reversed(range(n)):
            running = r[t] + gamma * v[t + 1] - v[t] + gamma * lam * running
            expected[t] = running
        np.testing.assert_allclose(advantages[i, :n].numpy(), expected, rtol=1e-12)
        np.testing.assert_allclose(returns[i, :n].numpy(), np.array(expected) + v[:n], rtol=1e-12)
        assert not advantages[i, n:].any() and not returns[i, n:].any()  # padding carries nothing
        np.testing.assert_allclose(rewards[i, :n].numpy(), r, rtol=1e-12)


@pytest.mark.parametrize("clip", [0.1, 0.2])
def test_ppo_policy_loss_matches_the_clipped_objective(clip):
    logps, old, _, _, _, _, mask = _fixed()
    advantages = torch.randn(N, T, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    loss, clip_fraction = policy_loss(logps, old, advantages, mask, clip)
    terms, clipped = [], []
    for i in range(N):
        for t in _tokens(i):
            ratio = math.exp(float(logps[i, t]) - float(old[i, t]))
            a = float(advantages[i, t])
            objective = min(ratio * a, min(max(ratio, 1 - clip), 1 + clip) * a)  # the paper's L^CLIP, maximized
            terms.append(-objective)
            clipped.append(float(objective < ratio * a))
    assert float(loss) == pytest.approx(np.mean(terms))
    assert float(clip_fraction) == pytest.approx(np.mean(clipped))
    assert 0 < float(clip_fraction) < 1  # the fixed tensors exercise both branches


def test_value_loss_matches_the_clipped_formula():
    _, _, _, values, old_values, _, mask = _fixed()
    returns = torch.randn(N, T, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    terms = []
    for i in range(N):
        for t in _tokens(i):
            v, vo, ret = float(values[i, t]), float(old_values[i, t]), float(returns[i, t])
            vc = vo + min(max(v - vo, -0.2), 0.2)
            terms.append(0.5 * max((v - ret) ** 2, (vc - ret) ** 2))
    assert float(value_loss(values, old_values, returns, mask, 0.2)) == pytest.approx(np.mean(terms))


def test_rloo_baseline_leaves_each_sample_out():
    rewards = torch.tensor([1.0, 2.0, 6.0, 0.5, 0.5, 3.5], dtype=torch.float64)  # 2 prompts x 3 samples
    expected = []
    for p in range(2):
        group = [float(r) for r in rewards[3 * p: 3 * p + 3]]
        for j, r in enumerate(group):
            others = [x for k, x in enumerate(group) if k != j]
            expected.append(r - sum(others) / len(others))
    np.testing.assert_allclose(rloo_advantages(rewards, 3).numpy(), expected)
    assert float(rloo_advantages(rewards, 3).view(2, 3).sum(-1).abs().max()) < 1e-12  # zero-sum per prompt
    with pytest.raises(ValueError, match="at least 2"):
        rloo_advantages(rewards, 1)


def test_policy_equal_to_reference_has_no_kl_and_loss_minus_mean_advantage():
    logps, _, _, _, _, _, mask = _fixed()
    for estimator in ("k1", "k3"):
        assert not kl_penalty(logps, logps.clone(), estimator).any()
    advantages = torch.randn(N, T, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    current = logps.clone().requires_grad_(True)
    loss, clip_fraction = policy_loss(current, logps, advantages, mask, 0.2)
    expected = -sum(float(advantages[i, t]) for i in range(N) for t in _tokens(i)) / sum(LENGTHS)
    assert float(loss) == pytest.approx(expected) and float(clip_fraction) == 0
    loss.backward()  # at ratio 1 the gradient is the policy gradient: -A / tokens on each response token
    torch.testing.assert_close(current.grad, -advantages * mask / sum(LENGTHS))


def test_whitening_uses_the_masked_tokens_only():
    _, _, _, values, _, _, mask = _fixed()
    white = masked_whiten(values, mask)
    kept = np.array([float(values[i, t]) for i in range(N) for t in _tokens(i)])
    expected = (kept - kept.mean()) / kept.std()
    np.testing.assert_allclose([float(white[i, t]) for i in range(N) for t in _tokens(i)], expected, rtol=1e-6)
    assert not (white * (1 - mask)).any()
