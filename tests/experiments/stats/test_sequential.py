import math

import numpy as np
import pytest

from experiments.stats import (
    SequentialState,
    always_valid_p_update,
    confidence_sequence_halfwidth,
    msprt_log_lambda,
    msprt_p,
    msprt_update,
)


def test_lambda_by_hand():
    # θ̂ = 0.2, V = 0.01, τ = 0.1: sqrt(V/(V+τ²)) = sqrt(1/2), exponent = 0.0004/0.0004 = 1.
    assert float(msprt_log_lambda(0.2, 0.01, 0.1)) == pytest.approx(0.5 * math.log(0.5) + 1.0, abs=1e-12)
    assert float(msprt_p(0.2, 0.01, 0.1)) == pytest.approx(math.exp(-1) / math.sqrt(0.5), abs=1e-4)  # 0.52026


def test_p_is_capped_at_one_and_nan_without_variance():
    assert float(msprt_p(0.0, 0.01, 0.1)) == 1.0
    assert np.isnan(msprt_p(0.1, 0.0, 0.1))


def test_confidence_sequence_halfwidth_by_hand():
    # V(V+τ²)/τ² = 0.02; 2·log(20) + log(2) = 6.684612
    assert float(confidence_sequence_halfwidth(0.01, 0.1, 0.05)) == pytest.approx(math.sqrt(0.02 * 6.684612), abs=1e-4)


def test_confidence_sequence_excludes_zero_exactly_when_p_below_alpha():
    est = np.linspace(0.0, 0.6, 61)
    hw = confidence_sequence_halfwidth(0.01, 0.1, 0.05)
    np.testing.assert_array_equal(np.abs(est) > hw, msprt_p(est, 0.01, 0.1) < 0.05)


def test_array_update_keeps_running_minimum_and_skips_undefined_looks():
    prev = np.array([0.5, 0.01, 0.3])
    new = always_valid_p_update(prev, np.array([0.0, 0.0, 0.2]), np.array([0.01, 0.01, np.nan]), 0.1)
    np.testing.assert_allclose(new, [0.5, 0.01, 0.3])


def test_state_carried_between_ticks():
    looks = [(0.30, 0.02), (0.25, 0.01), (0.05, 0.005), (0.10, float("nan")), (0.12, 0.002)]
    state = None
    history = []
    for estimate, variance in looks:
        state = msprt_update(state, estimate=estimate, variance=variance, tau=0.1, alpha=0.05)
        history.append(state)
    assert history[3] == history[2]  # the undefined look changed nothing
    assert history[-1].looks == 4
    # Each defined look reports itself: its 1/Λ and its interval, which excludes 0 exactly when p < α.
    for state, (estimate, variance) in zip(history, looks, strict=True):
        if math.isnan(variance):
            continue
        hw = float(confidence_sequence_halfwidth(variance, 0.1, 0.05))
        assert state.always_valid_p == pytest.approx(float(msprt_p(estimate, variance, 0.1)), abs=1e-12)
        assert (state.cs_lower, state.cs_upper) == pytest.approx((estimate - hw, estimate + hw), abs=1e-12)
        assert (state.cs_lower > 0) == (state.always_valid_p < 0.05)



def test_a_lift_that_fades_is_no_longer_significant_and_its_interval_is_never_empty():
    # A learning arm: +30% early (V = 0.002: the interval is 0.30 ± 0.137, so it rejects), then +5% on far more
    # data (V = 0.001: 0.05 ± 0.096). A running intersection would be [0.163, 0.146], empty, and a running
    # minimum would still call it significant.
    early = msprt_update(None, estimate=0.30, variance=0.002, tau=0.1, alpha=0.05)
    later = msprt_update(early, estimate=0.05, variance=0.001, tau=0.1, alpha=0.05)
    assert early.always_valid_p < 0.05 and early.cs_lower == pytest.approx(0.30 - 0.13667, abs=1e-5)
    assert later.always_valid_p == pytest.approx(float(msprt_p(0.05, 0.001, 0.1)), abs=1e-12)
    assert later.always_valid_p > 0.05
    assert later.cs_lower == pytest.approx(0.05 - 0.09606, abs=1e-5) and later.cs_lower < 0 < later.cs_upper
    assert later.cs_upper < early.cs_lower  # the two looks' intervals do not meet: the effect moved


def test_state_round_trips_through_json_dict():
    state = SequentialState(always_valid_p=0.2, cs_lower=-0.1, cs_upper=0.3, looks=7)
    assert SequentialState.from_dict(state.to_dict()) == state
    assert SequentialState.from_dict(None) == SequentialState()


def test_state_rejects_invalid_p():
    with pytest.raises(ValueError):
        SequentialState(always_valid_p=1.5)


def test_tau_must_be_positive():
    with pytest.raises(ValueError):
        msprt_log_lambda(0.1, 0.01, 0.0)
