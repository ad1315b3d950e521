import numpy as np
import pytest
from scipy import stats as sps

from experiments.stats import p_best_expected_loss


def test_p_best_sums_to_one_and_is_deterministic():
    means, variances = [0.050, 0.052, 0.049, 0.051], [4e-6, 5e-6, 4e-6, 6e-6]
    p1, l1 = p_best_expected_loss(means, variances, seed=42)
    p2, l2 = p_best_expected_loss(means, variances, seed=42)
    assert p1.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(l1, l2)
    assert not np.array_equal(p1, p_best_expected_loss(means, variances, seed=43)[0])


def test_two_arms_match_closed_form():
    # P(B > A) = Φ(d/s); E[max − A] = E[(B − A)⁺] = d·Φ(d/s) + s·φ(d/s).
    d, s = 0.002, np.sqrt(4e-6 + 5e-6)
    p, loss = p_best_expected_loss([0.050, 0.052], [4e-6, 5e-6], seed=1, draws=200_000)
    assert p[1] == pytest.approx(sps.norm.cdf(d / s), abs=0.005)
    assert loss[0] == pytest.approx(d * sps.norm.cdf(d / s) + s * sps.norm.pdf(d / s), abs=2e-5)
    assert loss[1] == pytest.approx(loss[0] - d, abs=2e-5)


def test_zero_variance_arms_are_point_masses():
    p, loss = p_best_expected_loss([0.1, 0.2], [0.0, 0.0], seed=0, draws=10)
    np.testing.assert_array_equal(p, [0.0, 1.0])
    np.testing.assert_allclose(loss, [0.1, 0.0], atol=1e-12)


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        p_best_expected_loss([0.1, 0.2], [1e-4, -1e-4], seed=0)
