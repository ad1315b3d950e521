"""Evaluation with a refitted reward model: point values by hand, and intervals that carry the model's noise."""

import numpy as np
import pytest

from experiments.offline.estimators import evaluate, ips
from experiments.offline.evaluation import evaluate_with_refit
from experiments.offline.obd import OBDLog
from experiments.offline.obd_validation import context_free_feedback


def test_per_group_policies_weight_each_row_by_its_own_group():
    # Group 0 always shows item 0 in slot 0, group 1 item 1. Rows (group, item, click, propensity):
    # (0, 0, 1, 0.5) → w 2; (1, 0, 1, 0.5) → w 0; (1, 1, 0, 0.5) → w 2; (0, 1, 1, 0.25) → w 0.
    policy = np.array([[[1.0], [0.0]], [[0.0], [1.0]]])
    estimates, feedback = evaluate_with_refit(
        item=[0, 0, 1, 1],
        slot=[0, 0, 0, 0],
        reward=[1, 1, 0, 1],
        propensity=[0.5, 0.5, 0.5, 0.25],
        group=[0, 1, 1, 0],
        policy=policy,
        estimators=["ips", "snips"],
        n_bootstrap=20,
        n_folds=2,
    )
    np.testing.assert_allclose(feedback.importance_weight, [2.0, 0.0, 2.0, 0.0])
    assert [e.value for e in estimates] == [pytest.approx(2 / 4), pytest.approx(2 / 4)]


def synthetic_log(seed: int) -> OBDLog:
    rng = np.random.default_rng(seed)
    n = 4000
    item, position = rng.integers(0, 8, n), rng.integers(1, 3, n)
    return OBDLog(
        policy="random",
        campaign="all",
        row_id=np.arange(n),
        timestamp=np.zeros(n, dtype="datetime64[us]"),
        item_id=item,
        position=position,
        click=(rng.random(n) < 0.02 + 0.01 * item).astype(int),
        propensity=np.full(n, 1 / 8),
        user_features=np.full((n, 4), "u"),
        affinity=np.zeros((n, 8)),
    )


def test_context_free_policy_matches_the_fixed_model_point_estimates():
    log = synthetic_log(1)
    table = np.tile(np.linspace(0.0, 0.25, 8)[:, None], (1, 2))
    estimates, _ = evaluate_with_refit(
        item=log.item_id,
        slot=log.slot,
        reward=log.click,
        propensity=log.propensity,
        group=np.zeros(log.n, dtype=int),
        policy=table[None],
        n_bootstrap=20,
        seed=3,
    )
    fixed = context_free_feedback(log, table, seed=3)
    assert [e.value for e in estimates] == pytest.approx([e.value for e in evaluate(fixed, n_bootstrap=2)])
    assert estimates[0].value == pytest.approx(ips(fixed))


def test_refitting_widens_the_direct_method_interval():
    log = synthetic_log(2)
    table = np.tile(np.linspace(0.0, 0.25, 8)[:, None], (1, 2))
    refit, _ = evaluate_with_refit(
        item=log.item_id,
        slot=log.slot,
        reward=log.click,
        propensity=log.propensity,
        group=np.zeros(log.n, dtype=int),
        policy=table[None],
        estimators=["dm"],
        n_bootstrap=200,
    )
    (fixed,) = evaluate(context_free_feedback(log, table), ["dm"], n_bootstrap=200)
    assert refit[0].ci_high - refit[0].ci_low > 5 * (fixed.ci_high - fixed.ci_low)
