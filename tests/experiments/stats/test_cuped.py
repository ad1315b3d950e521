"""CUPED for CTR (experiments/stats/cuped.py): hand-computed values, limits, and Monte Carlo properties on
returning users whose pre-exposure clicks say something about them."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.stats import DEFAULT_TAU, always_valid_p_update, enough_data, ratio_moments, relative_lift_moments
from experiments.stats.cuped import FIELDS, CupedSums, cuped_moments

# Arm A, three users (n, c, n0, c0); arm B, two.
A = dict(n=[2, 4, 2], c=[1, 1, 0], n0=[2, 2, 4], c0=[1, 0, 2])
B = dict(n=[3, 1], c=[1, 0], n0=[1, 3], c0=[1, 0])


def _stack(*arms: CupedSums) -> list[np.ndarray]:
    return [np.array(v) for v in zip(*(a.as_args() for a in arms), strict=True)]


def test_one_arm_by_hand():
    # R = 2/8 = 0.25, n̄ = 8/3; residuals c − R n = 0.5, 0, −0.5 → Σ = 0.5.
    # R0 = 3/8 = 0.375, n̄0 = 8/3; c0 − R0 n0 = 0.25, −0.75, 0.5 → Σ² = 0.875; cross Σ = 0.125 + 0 − 0.25 = −0.125.
    # θ = (−0.125 / n̄n̄0) / (0.875 / n̄0²) = −1/7; Var R = 3·0.5 / (2·8²) = 0.01171875 (the clustered CTR variance);
    # ρ² = 0.125² / (0.5·0.875) = 1/28, so Var R_adj = 0.01171875·27/28. One arm: R0 = R0_all, no shift.
    m = cuped_moments(*_stack(CupedSums.of_users(**A)))
    assert m.ratio[0] == pytest.approx(0.25) and m.adjusted[0] == pytest.approx(0.25)
    assert float(m.theta) == pytest.approx(-1 / 7)
    assert m.variance[0] == pytest.approx(0.01171875)
    assert m.adjusted_variance[0] == pytest.approx(0.01171875 * 27 / 28)
    assert m.variance_reduction[0] == pytest.approx(1 / 28)
    raw_r, raw_var = ratio_moments(3, 8, 2, 24, 2, 6)  # the same arm without a covariate
    assert (m.ratio[0], m.variance[0]) == pytest.approx((float(raw_r), float(raw_var)))


def test_two_arms_by_hand_share_one_theta_and_move_by_their_users_past():
    # B: R = 0.25, n̄ = 2, residuals 0.25, −0.25 (Σ² = 0.125); R0 = 0.25, n̄0 = 2, 0.75, −0.75 (Σ² = 1.125), cross 0.375.
    # Pooled θ = (−0.125/(64/9) + 0.375/4) / (0.875/(64/9) + 1.125/4) = 0.076171875 / 0.404296875 = 13/69.
    # R0_all = (3 + 1)/(8 + 4) = 1/3: A's users clicked more before (0.375) → A moves down by θ/24, B up by θ/12.
    # Var B_adj = (0.03125 − 2θ·0.09375 + θ²·0.28125) / 2 (dof 1: Var ψ = 0.125/4, Var φ = 1.125/4, Cov = 0.375/4).
    theta = 13 / 69
    m = cuped_moments(*_stack(CupedSums.of_users(**A), CupedSums.of_users(**B)))
    assert float(m.theta) == pytest.approx(theta)
    assert float(m.pre_ratio_all) == pytest.approx(1 / 3)
    assert m.adjusted == pytest.approx([0.25 - theta / 24, 0.25 + theta / 12])
    assert m.adjusted_variance[1] == pytest.approx((0.03125 - 2 * theta * 0.09375 + theta**2 * 0.28125) / 2)
    assert m.variance[1] == pytest.approx(0.015625)


def test_the_same_period_twice_explains_everything_and_new_users_change_nothing():
    rng = np.random.default_rng(3)
    n = 1 + rng.poisson(4, 500)
    c = rng.binomial(n, rng.beta(1, 9, 500))
    twice = cuped_moments(*_stack(CupedSums.of_users(n, c, n, c)))
    assert float(twice.theta) == pytest.approx(1.0)
    assert twice.variance_reduction[0] == pytest.approx(1.0)
    fresh = cuped_moments(*_stack(CupedSums.of_users(n, c, 0 * n, 0 * c), CupedSums.of_users(n[::-1], c[::-1], 0 * n, 0 * c)))
    assert float(fresh.theta) == 0.0
    np.testing.assert_allclose(fresh.adjusted, fresh.ratio)
    np.testing.assert_allclose(fresh.adjusted_variance, fresh.variance)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="between 0 and the impressions"):
        CupedSums.of_users([1], [2], [0], [0])
    with pytest.raises(ValueError, match="one length"):
        CupedSums.of_users([1, 2], [0], [0], [0])
    with pytest.raises(ValueError, match="expected the 15 sums"):
        cuped_moments(1.0, 2.0)
    assert len(FIELDS) == 15


# ---------------------------------------------------------------------------------------------- Monte Carlo

def _world(rng, *, experiments, users, ctr=0.05, icc=0.2, lift=0.0, returning=0.8, pre_mean=20, post_mean=4):
    """Users with a lasting click propensity (Beta, intra-user correlation ``icc``) seen before their first exposure
    (``returning`` of them, 1 + Poisson(pre_mean) impressions) and in it (1 + Poisson(post_mean)); fair-coin arms,
    B's propensities scaled by 1 + lift. Arrays (experiments, users)."""
    shape = (experiments, users)
    conc = 1.0 / icc - 1.0
    p = rng.beta(ctr * conc, (1 - ctr) * conc, shape)
    in_b = rng.random(shape) < 0.5
    n0 = np.where(rng.random(shape) < returning, 1 + rng.poisson(pre_mean, shape), 0)
    c0 = rng.binomial(n0, p)
    n = 1 + rng.poisson(post_mean, shape)
    c = rng.binomial(n, np.minimum(p * np.where(in_b, 1 + lift, 1.0), 1.0))
    return n, c, n0, c0, in_b


def _sums_at(n, c, n0, c0, in_b, looks):
    """The 15 CUPED sums per arm at each look (a prefix of each experiment's users): arrays [2, experiments, looks]."""
    per_user = dict(n_users=np.ones_like(n), sum_n=n, sum_c=c, sum_nn=n * n, sum_cc=c * c, sum_nc=n * c, sum_n0=n0,
                    sum_c0=c0, sum_n0n0=n0 * n0, sum_c0c0=c0 * c0, sum_n0c0=n0 * c0, sum_nn0=n * n0, sum_nc0=n * c0,
                    sum_cn0=c * n0, sum_cc0=c * c0)
    out = []
    for name in FIELDS:
        x = per_user[name].astype(np.float64)
        arms = [np.cumsum(np.where(mask, x, 0.0), axis=1)[:, looks - 1] for mask in (~in_b, in_b)]
        out.append(np.stack(arms))
    return out


def _always_valid(est_a, var_a, est_b, var_b, ready):
    lift, lift_var = relative_lift_moments(est_b, var_b, est_a, var_a)
    state = np.ones(lift.shape[0])
    for k in range(lift.shape[1]):
        state = np.where(ready[:, k], always_valid_p_update(state, lift[:, k], lift_var[:, k], DEFAULT_TAU), state)
    return state


def test_returning_users_variance_falls_and_the_formula_is_calibrated():
    # 2,000 A/A experiments of 4,000 users, 80 % of them returning with ~21 impressions of history, users who differ
    # in taste (intra-user correlation 0.2). The reduction depends on both (docs/statistics.md §16 has the sweep).
    rng = np.random.default_rng(20261203)
    n, c, n0, c0, in_b = _world(rng, experiments=2000, users=4000)
    m = cuped_moments(*_sums_at(n, c, n0, c0, in_b, np.array([4000])))
    raw_diff = (m.ratio[1] - m.ratio[0])[:, 0]
    adj_diff = (m.adjusted[1] - m.adjusted[0])[:, 0]
    empirical = 1 - adj_diff.var() / raw_diff.var()
    predicted = float(np.mean(m.variance_reduction))
    print(f"CUPED variance reduction on returning users: empirical {empirical:.3f}, predicted {predicted:.3f}")
    assert 0.2 <= empirical <= 0.4  # the 20–40 % PostHog quotes, in this world
    assert predicted == pytest.approx(empirical, abs=0.06)
    # The adjusted variance formula matches the spread of the adjusted difference across experiments (±10 %).
    assert adj_diff.var() / float(np.mean(m.adjusted_variance[0] + m.adjusted_variance[1])) == pytest.approx(1, abs=0.1)
    assert abs(adj_diff.mean()) < 3 * adj_diff.std() / np.sqrt(len(adj_diff))  # unbiased under A/A


def test_aa_with_cuped_peeked_50_times_stays_within_alpha_and_a_real_lift_is_found_sooner():
    rng = np.random.default_rng(7)
    looks = np.linspace(200, 6000, 50).astype(int)
    n, c, n0, c0, in_b = _world(rng, experiments=1000, users=6000)
    s = _sums_at(n, c, n0, c0, in_b, looks)
    m = cuped_moments(*s)
    ready = enough_data(s[2][0], s[0][0]) & enough_data(s[2][1], s[0][1])
    fpr = float((_always_valid(m.adjusted[0], m.adjusted_variance[0], m.adjusted[1], m.adjusted_variance[1], ready)
                 < 0.05).mean())
    print(f"A/A with CUPED, 50 looks, always-valid p < 0.05 in {fpr:.3f} of 1000 experiments")
    assert fpr <= 0.05

    n, c, n0, c0, in_b = _world(np.random.default_rng(8), experiments=400, users=6000, lift=0.15)
    s = _sums_at(n, c, n0, c0, in_b, looks)
    m = cuped_moments(*s)
    ready = enough_data(s[2][0], s[0][0]) & enough_data(s[2][1], s[0][1])
    adjusted = float((_always_valid(m.adjusted[0], m.adjusted_variance[0], m.adjusted[1], m.adjusted_variance[1], ready)
                      < 0.05).mean())
    raw = float((_always_valid(m.ratio[0], m.variance[0], m.ratio[1], m.variance[1], ready) < 0.05).mean())
    print(f"+15 % lift, 6,000 users: found by the always-valid test in {adjusted:.3f} with CUPED, {raw:.3f} without")
    assert adjusted > raw + 0.05
