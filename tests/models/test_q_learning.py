"""q_learning semantics: γ = 0 is a contextual bandit; the session state matters."""

from __future__ import annotations

import numpy as np

from tests.models.conftest import trained_arm


def test_gamma_zero_ranks_by_click_probability(world):
    arm = trained_arm("q_learning", world, n=2000, params={"gamma": 0.0, "epsilon": 0.0})
    ctx = world.context(4, np.arange(30))
    r = arm.rank(ctx, 5, np.random.default_rng(0))
    rows = world.batch(np.full(30, 4), np.arange(30), position=np.ones(30, np.int64))
    p = arm.predict(rows)
    np.testing.assert_allclose(r.scores, p[r.indices], rtol=1e-5)
    np.testing.assert_array_equal(r.indices, np.argsort(-p, kind="stable")[:5])


def test_positive_gamma_adds_a_learnt_continuation_value(world):
    arm = trained_arm("q_learning", world, n=10_000, params={"gamma": 0.5, "epsilon": 0.0, "lr": 0.01})
    ctx = world.context(4, np.arange(30))
    r = arm.rank(ctx, 30, np.random.default_rng(0))
    rows = world.batch(np.full(30, 4), np.arange(30), position=np.ones(30, np.int64))
    p = arm.predict(rows)
    # Q = P(click) + γ·C, and C is trained towards max Q(s', ·), which is
    # positive (clicks are rewards), so the learnt continuation is positive.
    continuation = (r.scores - p[r.indices]) / 0.5
    assert continuation.mean() > 0.1, continuation


def test_session_history_changes_the_prediction(world):
    arm = trained_arm("q_learning", world, n=3000)
    users, items = np.full(2, 7), np.array([11, 11])
    clicked = np.full((2, world.config.history_len), -1)
    clicked[1, :3] = [11, 12, 13]
    p = arm.predict(world.batch(users, items, clicked_idx=clicked, impressed_idx=clicked))
    assert abs(p[0] - p[1]) > 1e-4
