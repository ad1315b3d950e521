import numpy as np
import pytest
from scipy import stats as sps

from experiments.stats import (
    ClusteredRatioSummary,
    Estimate,
    ctr_estimate,
    design_effect,
    difference,
    fixed_horizon_p,
    ratio_moments,
    relative_lift,
    sample_size_per_arm,
    stratified_ctr,
    wilson_interval,
)

TINY = ClusteredRatioSummary.from_users([1, 2, 3, 4], [0, 1, 1, 2])


def test_ctr_variance_by_hand():
    # R = 4/10; var_n = 5/3, var_c = 2/3, cov = 1; mean_n = 2.5, K = 4:
    # (2/3 − 2·0.4·1 + 0.16·5/3) / (4·2.5²) = 0.1333… / 25.
    est = ctr_estimate(TINY)
    assert est.value == pytest.approx(0.4, abs=1e-12)
    assert est.variance == pytest.approx(0.0053333333, abs=1e-9)


def test_ctr_variance_matches_numpy_formula_on_random_users():
    rng = np.random.default_rng(11)
    n = 1 + rng.poisson(6, 500)
    c = rng.binomial(n, rng.beta(1, 12, 500))
    r = c.sum() / n.sum()
    cov = np.cov(n, c, ddof=1)
    expected = (cov[1, 1] - 2 * r * cov[0, 1] + r * r * cov[0, 0]) / (n.size * n.mean() ** 2)
    est = ctr_estimate(ClusteredRatioSummary.from_users(n, c))
    assert est.value == pytest.approx(r, abs=1e-12)
    assert est.variance == pytest.approx(expected, rel=1e-9)


def test_scalar_and_array_paths_agree():
    rng = np.random.default_rng(12)
    n = 1 + rng.poisson(3, 200)
    s = ClusteredRatioSummary.from_users(n, rng.binomial(n, 0.1))
    r, v = ratio_moments(*s.to_dict().values())
    assert (ctr_estimate(s).value, ctr_estimate(s).variance) == pytest.approx((float(r), float(v)), rel=1e-12)


def test_single_impression_users_give_binomial_variance_up_to_k_over_k_minus_1():
    # With one impression per user the cluster variance is the binomial one × K/(K−1).
    clicks = np.r_[np.ones(30), np.zeros(70)]
    est = ctr_estimate(ClusteredRatioSummary.from_users(np.ones(100), clicks))
    assert est.variance == pytest.approx(0.3 * 0.7 / 100 * 100 / 99, abs=1e-12)
    assert design_effect(ClusteredRatioSummary.from_users(np.ones(100), clicks)) == pytest.approx(100 / 99)


def test_undefined_cases_are_nan():
    r, v = ratio_moments([0, 1], [0, 3], [0, 1], [0, 9], [0, 1], [0, 3])
    assert np.isnan(r[0]) and np.isnan(v[0]) and np.isnan(v[1])
    assert not ctr_estimate(ClusteredRatioSummary.empty()).defined


def test_interval_is_estimate_plus_minus_z_se():
    lo, hi = Estimate(0.05, 4e-6).interval(0.95)
    assert (lo, hi) == pytest.approx((0.05 - 1.959964 * 0.002, 0.05 + 1.959964 * 0.002), abs=1e-6)


def test_difference_and_relative_lift_reference_values():
    t, c = Estimate(0.06, 1e-5), Estimate(0.05, 4e-6)
    d = difference(t, c)
    assert (d.value, d.variance) == pytest.approx((0.01, 1.4e-5), abs=1e-12)
    lift = relative_lift(t, c)
    # Var = Vt/C² + T²·Vc/C⁴ = 0.004 + 0.002304
    assert lift.value == pytest.approx(0.2, abs=1e-12)
    assert lift.variance == pytest.approx(0.006304, abs=1e-10)


def test_fixed_horizon_p_matches_scipy():
    d = Estimate(0.01, 1.4e-5)
    assert fixed_horizon_p(d) == pytest.approx(2 * sps.norm.sf(0.01 / np.sqrt(1.4e-5)), abs=1e-4)
    assert fixed_horizon_p(Estimate(0.0, 1.4e-5)) == pytest.approx(1.0)


def test_stratified_ctr_is_weighted_average_with_weighted_variance():
    a = ClusteredRatioSummary.from_users([1, 2, 3, 4], [0, 1, 1, 2])
    b = ClusteredRatioSummary.from_users([2, 2, 2], [1, 0, 0])
    ea, eb = ctr_estimate(a), ctr_estimate(b)
    est = stratified_ctr([a, b], [3, 1])
    assert est.value == pytest.approx(0.75 * ea.value + 0.25 * eb.value, abs=1e-12)
    assert est.variance == pytest.approx(0.75**2 * ea.variance + 0.25**2 * eb.variance, abs=1e-12)


def test_stratified_ctr_with_one_period_is_the_plain_estimate():
    assert stratified_ctr([TINY], [7.0]) == ctr_estimate(TINY)


def test_sample_size_reference():
    # (z.975 + z.8)² · (0.1·0.9 + 0.11·0.89) / 0.01² = 14 748.5…
    assert sample_size_per_arm(baseline_ctr=0.1, relative_lift=0.1) == 14749
    assert sample_size_per_arm(baseline_ctr=0.1, relative_lift=0.1, design_effect=2.0) == 29497


def test_sample_size_rejects_zero_lift():
    with pytest.raises(ValueError):
        sample_size_per_arm(baseline_ctr=0.1, relative_lift=0.0)


@pytest.mark.parametrize(
    "p, n, expected",
    [
        # Hand-computed: centre (p + z²/2n)/(1 + z²/n), half-width z·sqrt(p(1-p)/n + z²/4n²)/(1 + z²/n).
        (0.5, 100, (0.403832, 0.596168)),
        (0.0, 10, (0.0, 0.277533)),
        (0.2, 12.5, (0.064160, 0.476884)),  # a fractional (effective) sample size
    ],
)
def test_wilson_interval_matches_hand_computed_values(p, n, expected):
    lo, hi = wilson_interval(p, n)

    assert lo == pytest.approx(expected[0], abs=1e-6)
    assert hi == pytest.approx(expected[1], abs=1e-6)


def test_wilson_interval_without_trials_is_the_unit_interval():
    assert wilson_interval(0.3, 0) == (0.0, 1.0)
