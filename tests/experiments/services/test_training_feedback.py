"""The fake-negative weighted delayed-feedback scheme: weights, and a replay against waiting out the window."""

from __future__ import annotations

import numpy as np

from experiments.services.training_feedback import fnw_calibrate, fnw_label_logloss, fnw_weights, replay, replay_stream


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


def test_the_label_logloss_of_fnw_rows_is_the_impressions_logloss_against_their_eventual_labels():
    # Three impressions (p 0.2, 0.5, 0.9 when they were trained as negatives); the second and third were clicked,
    # their click rows scored at 0.5 and 0.8 when the clicks arrived.
    labels = np.array([0, 0, 0, 1, 1], np.float32)
    p = np.array([0.2, 0.5, 0.9, 0.5, 0.8])
    loss, count = fnw_label_logloss(labels=labels, p=p)
    by_hand = -np.log(0.8) - np.log(0.5) - np.log(0.1) + (np.log(0.5) - np.log(0.5)) + (np.log(0.2) - np.log(0.8))
    assert count == 3.0
    assert abs(loss - by_hand) < 1e-12
    # With the click rows scored as their impressions were, it is exactly the per-impression logloss.
    same = fnw_label_logloss(labels=labels, p=np.array([0.2, 0.5, 0.9, 0.5, 0.9]))[0]
    assert abs(same - (-np.log(0.8) - np.log(0.5) - np.log(0.9))) < 1e-12
    # Importance weights weight each row's term and the count.
    wl, wc = fnw_label_logloss(labels=labels, p=p, sample_weight=np.array([2, 1, 1, 1, 1], np.float32))
    assert (abs(wl - (by_hand - np.log(0.8))) < 1e-12, wc) == (True, 4.0)


def test_the_label_logloss_is_proper_where_the_self_weighted_fnw_logloss_is_not():
    """Expected score of predicting q for impressions of true rate p = 0.3, over the FNW rows they produce."""
    p = 0.3
    qs = np.linspace(0.05, 0.6, 111)

    def expected(score):  # one negative row per impression, a positive row with probability p
        return np.array([score(q) for q in qs])

    def label(q):
        loss_neg, n = fnw_label_logloss(labels=np.array([0.0]), p=np.array([q]))
        loss_pos, _ = fnw_label_logloss(labels=np.array([1.0]), p=np.array([q]))
        return (loss_neg + p * loss_pos) / n

    def self_weighted(q):  # models.metrics.logloss with fnw_weights from the scored q itself
        w_neg, w_pos = fnw_weights(labels=np.array([0.0, 1.0]), p=np.array([q, q]))
        return (w_neg * -np.log1p(-q) + p * w_pos * -np.log(q)) / (w_neg + p * w_pos)

    assert abs(qs[np.argmin(expected(label))] - p) < 0.006
    # The self-weighted score is lowest well below the truth: under-predicting pays.
    assert qs[np.argmin(expected(self_weighted))] < p - 0.05
