"""The fake-negative weighted delayed-feedback scheme: weights, and a replay against waiting out the window."""

from __future__ import annotations

import numpy as np

from experiments.services.training_feedback import fnw_calibrate, fnw_weights, replay, replay_stream


def test_fnw_weights_are_one_plus_p_for_positives_and_one_minus_p_squared_for_negatives():
    w = fnw_weights(labels=np.array([1.0, 0.0, 1.0, 0.0]), p=np.array([0.2, 0.2, 0.0, 0.9]))

    np.testing.assert_allclose(w, [1.2, 0.96, 1.0, 0.19])


def test_weighting_by_fnw_recovers_the_true_rate_from_the_duplicated_stream():
    # One impression with true rate p appears as a negative and, with probability p, again as a positive.
    p = 0.3
    w_pos, w_neg = fnw_weights(labels=np.array([1.0, 0.0]), p=np.array([p, p]))

    assert abs(p * w_pos / (p * w_pos + 1.0 * w_neg) - p) < 1e-12
    assert abs(fnw_calibrate(np.array([p / (1 + p)]))[0] - p) < 1e-12


def test_fnw_is_no_worse_than_waiting_for_the_window_and_learns_each_click_within_a_tick():
    stream = replay_stream(n=30_000, dim=8, rate_per_s=20.0, mean_delay_s=20.0, window_s=300.0, seed=3)

    fnw = replay(stream, scheme="fnw", tick_s=2.0, window_s=300.0)
    wait = replay(stream, scheme="window", tick_s=2.0, window_s=300.0)

    assert fnw.logloss <= wait.logloss
    assert fnw.mean_label_delay_s <= 2.0
    assert wait.mean_label_delay_s >= 100 * fnw.mean_label_delay_s


def test_under_drift_fnw_beats_waiting_for_the_window():
    stream = replay_stream(
        n=30_000, dim=8, rate_per_s=20.0, mean_delay_s=20.0, window_s=300.0, seed=4, drift_every_s=500.0
    )

    fnw = replay(stream, scheme="fnw", tick_s=2.0, window_s=300.0)
    wait = replay(stream, scheme="window", tick_s=2.0, window_s=300.0)

    assert fnw.logloss < 0.9 * wait.logloss
