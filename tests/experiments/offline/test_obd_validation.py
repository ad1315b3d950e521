"""The pieces of the Open Bandit validation, on logs small enough to check by hand."""

import numpy as np
import pytest

from experiments.offline.estimators import PolicyEstimate, ips
from experiments.offline.obd import OBDLog
from experiments.offline.obd_validation import (
    action_frequency_policy,
    compare,
    context_free_feedback,
    mean_logged_propensity,
    on_policy_truth,
    thompson_prior_policy,
    uniform_policy,
)
from experiments.offline.reward_model import cross_fit_item_slot_ctr, fit_item_slot_ctr


def log_of(item, position, click, propensity) -> OBDLog:
    n = len(item)
    return OBDLog(
        policy="bts",
        campaign="all",
        row_id=np.arange(n),
        timestamp=np.arange(n).astype("datetime64[s]").astype("datetime64[us]"),
        item_id=np.array(item),
        position=np.array(position),
        click=np.array(click),
        propensity=np.array(propensity, dtype=float),
        user_features=np.full((n, 4), "u"),
        affinity=np.zeros((n, 2)),
    )


def test_item_slot_ctr_shrinks_each_cell_toward_item_times_slot_rates():
    # rows (item, slot, click): (0,0,1) (0,1,0) (1,0,0) (1,0,0); prior strength 1; overall CTR ¼.
    # slot rates (1+¼)/(3+1), (0+¼)/(1+1) → factors 1.25, 0.5; item rates (1+¼)/3, (0+¼)/3.
    table = fit_item_slot_ctr([0, 0, 1, 1], [0, 1, 0, 0], [1, 0, 0, 0], n_items=2, n_slots=2, prior_strength=1.0)
    prior = np.outer([1.25 / 3, 0.25 / 3], [1.25, 0.5])
    expected = (np.array([[1, 0], [0, 0]]) + prior) / (np.array([[1, 1], [2, 0]]) + 1)
    np.testing.assert_allclose(table, expected)


def test_cross_fitting_predicts_each_row_from_the_other_folds():
    item, slot = np.array([0, 0, 1, 1, 0, 1]), np.array([0, 0, 0, 0, 0, 0])
    click = np.array([1, 0, 0, 1, 1, 0])
    model = cross_fit_item_slot_ctr(item, slot, click, n_items=2, n_slots=1, n_folds=3, seed=4)
    fold = model.fold
    expected = [
        fit_item_slot_ctr(item[fold != f], slot[fold != f], click[fold != f], n_items=2, n_slots=1)[item[i], 0]
        for i, f in enumerate(fold)
    ]
    np.testing.assert_allclose(model.logged(item, slot), expected)
    np.testing.assert_array_equal(np.bincount(fold), [2, 2, 2])


def test_expected_reward_of_a_table_policy_and_of_row_policies_agree():
    item, slot, click = np.array([0, 1, 2, 0]), np.array([0, 1, 0, 1]), np.array([1, 0, 0, 1])
    model = cross_fit_item_slot_ctr(item, slot, click, n_items=3, n_slots=2, n_folds=2, seed=0)
    policy = np.array([[0.5, 0.2], [0.25, 0.3], [0.25, 0.5]])
    np.testing.assert_allclose(model.expected(slot, policy), model.expected_rows(slot, policy[:, slot].T))


def test_action_frequencies_give_each_slot_a_distribution():
    log = log_of(item=[0, 1, 1, 0, 1], position=[1, 1, 1, 2, 2], click=[0] * 5, propensity=[0.5] * 5)
    np.testing.assert_allclose(action_frequency_policy(log, n_items=2, n_slots=2), [[1 / 3, 1 / 2], [2 / 3, 1 / 2]])


def test_mean_logged_propensity_averages_each_cell():
    log = log_of(item=[0, 0, 1], position=[1, 1, 2], click=[0, 0, 0], propensity=[0.2, 0.6, 0.3])
    np.testing.assert_allclose(mean_logged_propensity(log, n_items=2, n_slots=2), [[0.4, 0.0], [0.0, 0.3]])


def test_thompson_prior_policy_ranks_by_sampled_means():
    # Item 0's mean is ≈1, items 1 and 2 share a mean ≈0.001: item 0 always leads, 1 and 2 split slot 2.
    alpha, beta = np.array([1000.0, 1.0, 1.0]), np.array([1.0, 1000.0, 1000.0])
    policy = thompson_prior_policy(alpha, beta, n_slots=2, n_sim=20_000, seed=1)
    np.testing.assert_allclose(policy[:, 0], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(policy[:, 1], [0.0, 0.5, 0.5], atol=0.02)


def test_wilson_interval_of_zero_clicks():
    truth = on_policy_truth(log_of(item=[0] * 10, position=[1] * 10, click=[0] * 10, propensity=[1.0] * 10))
    # Wilson upper bound for 0/n is z² / (n + z²).
    assert (truth.ctr, truth.ci_low) == (0.0, pytest.approx(0.0, abs=1e-12))
    assert truth.ci_high == pytest.approx(1.959963984540054**2 / (10 + 1.959963984540054**2))


def test_comparison_combines_both_standard_errors():
    truth = on_policy_truth(log_of(item=[0] * 4, position=[1] * 4, click=[1, 0, 0, 0], propensity=[1.0] * 4))
    estimate = PolicyEstimate("ips", value=0.5, ci_low=0.4, ci_high=0.6, std_error=0.1, n=4, level=0.95)
    (comparison,) = compare([estimate], truth)
    assert comparison.covered is False
    assert comparison.z == pytest.approx(0.25 / np.hypot(0.1, np.sqrt(0.25 * 0.75 / 4)))


def test_context_free_feedback_weights_by_table_over_logged_propensity():
    log = log_of(item=[0, 1, 1], position=[1, 1, 2], click=[1, 0, 1], propensity=[0.5, 0.5, 0.25])
    feedback = context_free_feedback(log, uniform_policy(n_items=2, n_slots=2), n_folds=2)
    np.testing.assert_allclose(feedback.importance_weight, [1.0, 1.0, 2.0])
    assert ips(feedback) == pytest.approx((1 + 0 + 2) / 3)
