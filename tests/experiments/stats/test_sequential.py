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
    p_path = [s.always_valid_p for s in history]
    assert p_path == sorted(p_path, reverse=True)
    assert history[3] == history[2]  # the undefined look changed nothing
    assert history[-1].looks == 4
    expected_p = min(float(msprt_p(e, v, 0.1)) for e, v in looks if not math.isnan(v))
    assert history[-1].always_valid_p == pytest.approx(expected_p, abs=1e-12)
    # The running intersection only ever shrinks.
    assert history[-1].cs_lower >= history[0].cs_lower
    assert history[-1].cs_upper <= history[0].cs_upper


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
