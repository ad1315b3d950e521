"""Monte Carlo properties of the tests, on clustered users (several correlated
impressions each), vectorised over thousands of simulated experiments.

Model (tests/experiments/stats/simulate.py): impressions per user 1 + Poisson(λ);
user click probability ~ Beta with mean = CTR and intra-user correlation ρ;
design effect 1 + ρ·(E[n²]/E[n] − 1).
"""

import numpy as np
import pytest

from experiments.stats import (
    DEFAULT_TAU,
    AllocationPeriod,
    ClusteredRatioSummary,
    always_valid_p_update,
    binomial_variance,
    enough_data,
    experiment_report,
    ratio_moments,
    relative_lift_moments,
    sample_size_per_arm,
    two_sided_p,
)
from tests.experiments.stats.simulate import arm_sums_at, arm_totals, peek_indices, simulate_users

ALPHA = 0.05


def _sequential_p(a, b, tau=DEFAULT_TAU):
    """Carry the always-valid p through every peek exactly as the dashboard does tick by tick."""
    ra, va = ratio_moments(*a.as_args())
    rb, vb = ratio_moments(*b.as_args())
    lift, lift_var = relative_lift_moments(rb, vb, ra, va)
    ready = enough_data(a.sum_c, a.n_users) & enough_data(b.sum_c, b.n_users)
    state = np.ones(lift.shape[0])
    for k in range(lift.shape[1]):
        state = np.where(ready[:, k], always_valid_p_update(state, lift[:, k], lift_var[:, k], tau), state)
    return state


def _fixed_p(a, b):
    ra, va = ratio_moments(*a.as_args())
    rb, vb = ratio_moments(*b.as_args())
    return two_sided_p(rb - ra, va + vb)


def test_aa_peeking_always_valid_holds_alpha_and_naive_does_not():
    # 2,000 A/A experiments, CTR 5%, ~5 impressions per user, ρ = 0.1 (design effect 1.48),
    # a peek after every 100 impressions up to 20,000 (200 peeks).
    rng = np.random.default_rng(20261128)
    n, c, in_b = simulate_users(rng, experiments=2000, users=4500, ctr=0.05, icc=0.1, extra_impressions=4)
    idx = peek_indices(n, every=100, peeks=200)
    a, b = arm_sums_at(n, c, ~in_b, idx), arm_sums_at(n, c, in_b, idx)
    naive_rate = float((np.nanmin(_fixed_p(a, b), axis=1) < ALPHA).mean())
    always_valid_rate = float((_sequential_p(a, b) < ALPHA).mean())
    last_look_rate = float((_fixed_p(a, b)[:, -1] < ALPHA).mean())
    print(
        f"A/A rejection rates over 2000 experiments: always-valid={always_valid_rate:.4f} "
        f"naive fixed-horizon peeked={naive_rate:.4f} fixed-horizon single look={last_look_rate:.4f}"
    )
    assert always_valid_rate <= ALPHA
    assert naive_rate > 0.15
    assert naive_rate > 2 * always_valid_rate
    # Looked at once, the clustered z-test is calibrated (binomial SE at n=2000 is 0.5%).
    assert last_look_rate == pytest.approx(ALPHA, abs=0.015)


def test_power_at_planned_sample_size_and_sequential_eventually_rejects():
    # Baseline CTR 10%, true relative lift 10%, ~5 impressions per user, ρ = 0.1.
    deff = 1 + 0.1 * (29 / 5 - 1)  # E[n] = 5, E[n²] = 29
    n_per_arm = sample_size_per_arm(baseline_ctr=0.10, relative_lift=0.10, design_effect=deff)
    assert n_per_arm == 21828  # impressions per arm (≈ 4,366 users per arm) for 80% power
    rng = np.random.default_rng(5)
    users = int(2 * n_per_arm / 5 * 1.1)
    n, c, in_b = simulate_users(rng, experiments=1000, users=users, ctr=0.10, ctr_b=0.11, icc=0.1, extra_impressions=4)
    idx = peek_indices(n, every=2 * n_per_arm, peeks=1)
    power = float((_fixed_p(arm_sums_at(n, c, ~in_b, idx), arm_sums_at(n, c, in_b, idx))[:, 0] < ALPHA).mean())

    # Sequential: 200 experiments, a look every 10% of the planned size, up to twice it.
    n, c, in_b = simulate_users(
        rng, experiments=200, users=2 * users, ctr=0.10, ctr_b=0.11, icc=0.1, extra_impressions=4
    )
    idx = peek_indices(n, every=2 * n_per_arm // 10, peeks=20)
    seq = _sequential_p(arm_sums_at(n, c, ~in_b, idx), arm_sums_at(n, c, in_b, idx))
    sequential_power = float((seq < ALPHA).mean())
    print(f"power at n={n_per_arm}/arm: fixed-horizon={power:.3f}; always-valid by 2n: {sequential_power:.3f}")
    assert power == pytest.approx(0.80, abs=0.04)
    assert sequential_power > 0.7


def test_clustered_ci_covers_truth_while_binomial_ci_undercovers():
    # 500 users per experiment with ~20 impressions each and ρ = 0.1: design effect ≈ 3.
    rng = np.random.default_rng(3)
    n, c, _ = simulate_users(rng, experiments=2000, users=500, ctr=0.05, icc=0.1, extra_impressions=19)
    s = arm_totals(n, c, np.ones_like(n, dtype=bool))
    ctr, clustered_var = ratio_moments(*s.as_args())
    naive_var = binomial_variance(s.sum_n, s.sum_c)
    clustered = float((np.abs(ctr - 0.05) <= 1.959964 * np.sqrt(clustered_var)).mean())
    naive = float((np.abs(ctr - 0.05) <= 1.959964 * np.sqrt(naive_var)).mean())
    print(f"coverage of the 95% CI: clustered={clustered:.3f} binomial={naive:.3f}")
    assert clustered == pytest.approx(0.95, abs=0.02)
    assert naive < 0.85


def _period_users(rng, users, ctr, extra=4, icc=0.05):
    n = 1 + rng.poisson(extra, users)
    conc = 1 / icc - 1
    c = rng.binomial(n, rng.beta(ctr * conc, (1 - ctr) * conc, size=users))
    return ClusteredRatioSummary.from_users(n, c)


def _simpson_experiment(rng):
    # CTR halves between the periods for every arm; B is truly 10% better in both.
    # Period 1 sends 90% of users to A, period 2 sends 90% to B (e.g. a bandit moving traffic).
    spec = [({"A": 0.9, "B": 0.1}, 0.10), ({"A": 0.1, "B": 0.9}, 0.05)]
    periods = []
    for weights, base in spec:
        arms = {
            "A": _period_users(rng, int(4000 * weights["A"]), base),
            "B": _period_users(rng, int(4000 * weights["B"]), base * 1.1),
        }
        periods.append(AllocationPeriod(weights=weights, arms=arms, label=f"ctr={base}"))
    # Users here are fresh in each period, so the totals are the sums of the periods.
    totals = {name: periods[0].arms[name] + periods[1].arms[name] for name in ("A", "B")}
    return totals, periods


def test_period_stratified_lift_is_unbiased_where_pooled_reverses_sign():
    rng = np.random.default_rng(17)
    stratified, pooled, covered, srm_alerts = [], [], [], []
    for _ in range(200):
        totals, periods = _simpson_experiment(rng)
        r = experiment_report(totals, control="A", weights={"A": 0.1, "B": 0.9}, periods=periods, seed=0, draws=1000)
        b = r["arms"]["B"]
        stratified.append(b["lift"])
        pooled.append(b["ctr"] / r["arms"]["A"]["ctr"] - 1)
        covered.append(b["lift_ci"][0] <= 0.10 <= b["lift_ci"][1])
        srm_alerts.append(r["srm"]["alert"])
    print(f"true lift 0.10: stratified mean={np.mean(stratified):.4f} pooled mean={np.mean(pooled):.4f}")
    assert np.mean(stratified) == pytest.approx(0.10, abs=0.01)
    assert np.mean(pooled) < -0.25  # Simpson's paradox: pooled says B is much worse
    assert np.mean(covered) > 0.9
    assert not any(srm_alerts)  # each period matches its own weights


def test_pooled_srm_against_current_weights_would_false_alarm_after_reallocation():
    totals, periods = _simpson_experiment(np.random.default_rng(2))
    with_periods = experiment_report(totals, control="A", weights={"A": 0.1, "B": 0.9}, periods=periods, draws=100)
    without = experiment_report(totals, control="A", weights={"A": 0.1, "B": 0.9}, draws=100)
    assert not with_periods["srm"]["alert"]
    assert without["srm"]["alert"]
    assert [w["code"] for w in without["warnings"]] == ["srm"]
