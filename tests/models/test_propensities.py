"""Monte-Carlo check: empirical (item, slot) frequencies match reported propensities."""

from __future__ import annotations

import numpy as np
import pytest

from models.types import Users
from tests.models.conftest import KINDS, trained_arm

N_DRAWS, K = 20_000, 3
CANDS = np.array([3, 17, 42, 99, 123, 256, 311])


def _ctx_and_users(world, user: int = 5):
    ctx = world.context(user, CANDS)
    users = Users.make(np.full(N_DRAWS, ctx.user_key), np.repeat(ctx.user_feats[None], N_DRAWS, axis=0))
    return ctx, users


@pytest.mark.parametrize(
    "kind,params",
    [(k, {}) for k in KINDS] + [("popularity", {"exploration": "thompson"})],
    ids=[*KINDS, "popularity-thompson"],
)
def test_empirical_slot_frequencies_match_exact_propensities(kind, params, world):
    # Exploration rates are raised so every scheme's randomness is visible.
    extra = {"epsilon": 0.3} if kind in ("ftrl_logreg", "deep_ctr", "q_learning") else {}
    arm = trained_arm(kind, world, n=2000, params=params | extra)
    ctx, users = _ctx_and_users(world)
    p = arm.propensity_matrix(ctx, K)
    np.testing.assert_allclose(p.sum(axis=0), 1.0, atol=1e-5)
    assert (p.sum(axis=1) <= 1.0 + 1e-9).all()
    # The randomisation must actually be non-trivial for the test to mean something.
    assert ((p > 0.02) & (p < 0.98)).sum() >= 4, p

    rng = np.random.default_rng(11)
    slates, _, _ = arm.rank_many(users, ctx.item_keys, ctx.item_feats, K, rng, propensities=False)
    freq = np.zeros_like(p)
    for j in range(K):
        freq[:, j] = np.bincount(slates[:, j], minlength=len(CANDS)) / N_DRAWS
    se = np.sqrt(p * (1 - p) / N_DRAWS)
    assert (np.abs(freq - p) <= 3 * se + 1e-12).all(), (freq, p)
    # Each logged propensity is the matrix entry of the shown (item, slot).
    few = Users.make(users.keys[:50], users.feats[:50])
    slates, _, props = arm.rank_many(few, ctx.item_keys, ctx.item_feats, K, rng)
    np.testing.assert_allclose(props, p[slates, np.arange(K)], rtol=1e-6, atol=1e-9)
    assert (props > 0).all() and (props <= 1).all()


@pytest.mark.parametrize("kind", KINDS)
def test_rank_returns_k_distinct_items_with_positive_propensities(kind, world):
    arm = trained_arm(kind, world, n=1000)
    ctx = world.context(9, np.arange(200))
    r = arm.rank(ctx, 10, np.random.default_rng(0))
    assert r.indices.shape == (10,) and len(set(r.indices.tolist())) == 10
    assert ((r.propensities > 0) & (r.propensities <= 1)).all()
    p = arm.propensity_matrix(ctx, 10)
    np.testing.assert_allclose(r.propensities, p[r.indices, np.arange(10)], rtol=1e-6)


@pytest.mark.parametrize("kind", ["ftrl_logreg", "deep_ctr", "q_learning"])
def test_serving_scores_match_predict_at_slot_one(kind, world):
    # Serving scores all candidates with a separate, vectorised code path; it
    # must agree with the training-time forward pass at the serving slot.
    arm = trained_arm(
        kind, world, n=2000, params={"epsilon": 0.0, "gamma": 0.0} if kind == "q_learning" else {"epsilon": 0.0}
    )
    items = np.arange(60)
    r = arm.rank(world.context(8, items), 60, np.random.default_rng(0))
    p = arm.predict(world.batch(np.full(60, 8), items, position=np.ones(60, np.int64)))
    np.testing.assert_allclose(r.scores, p[r.indices], rtol=1e-5, atol=1e-7)
    assert (np.diff(p[r.indices]) <= 1e-6).all()  # greedy order, up to float32 noise


@pytest.mark.parametrize("kind", KINDS)
def test_rank_with_matrix_is_rank_and_propensity_matrix_from_one_pass(kind, world):
    arm = trained_arm(kind, world, n=1000, params={"epsilon": 0.3} if kind in ("ftrl_logreg", "deep_ctr",
                                                                                 "q_learning") else {})
    ctx = world.context(4, np.arange(150))
    for seed in range(5):
        ranking, matrix = arm.rank_with_matrix(ctx, 6, np.random.default_rng(seed))
        alone = arm.rank(ctx, 6, np.random.default_rng(seed))
        np.testing.assert_array_equal(ranking.indices, alone.indices)
        np.testing.assert_allclose(ranking.scores, alone.scores, rtol=1e-6)
        np.testing.assert_allclose(ranking.propensities, alone.propensities, rtol=1e-9)
        np.testing.assert_allclose(matrix, arm.propensity_matrix(ctx, 6), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_rank_many_against_gives_each_rows_exact_probability_of_the_shown_slate(kind, world):
    """The shadow's batched pass: per row, ``target`` is the row's own matrix at the shown (item, slot), and the
    arm's own slates are distributed as ``rank`` draws them."""
    arm = trained_arm(kind, world, n=1000, params={"epsilon": 0.3} if kind in ("ftrl_logreg", "deep_ctr",
                                                                             "q_learning") else {})
    ctxs = [world.context(u, CANDS) for u in (1, 5, 9, 5)]
    users = Users.make(np.array([c.user_key for c in ctxs]), np.stack([c.user_feats for c in ctxs]))
    rng = np.random.default_rng(3)
    shown = np.stack([rng.permutation(len(CANDS))[:K] for _ in ctxs])
    slates, scores, target = arm.rank_many_against(users, ctxs[0].item_keys, ctxs[0].item_feats, shown, rng)
    assert slates.shape == scores.shape == target.shape == (len(ctxs), K)
    for r, ctx in enumerate(ctxs):
        p = arm.propensity_matrix(ctx, K)
        np.testing.assert_allclose(target[r], p[shown[r], np.arange(K)], rtol=1e-5, atol=1e-9)
        assert len(set(slates[r].tolist())) == K
        assert (p[slates[r], np.arange(K)] > 0).all()  # the arm's own slate is one it can draw
    # Many draws of one row: the own slates' slot frequencies are the matrix (4 standard errors: 21 cells).
    many = Users.make(np.full(4000, ctxs[1].user_key), np.repeat(ctxs[1].user_feats[None], 4000, axis=0))
    own, _, _ = arm.rank_many_against(many, ctxs[1].item_keys, ctxs[1].item_feats, np.repeat(shown[1][None], 4000, axis=0), rng)
    p = arm.propensity_matrix(ctxs[1], K)
    freq = np.stack([np.bincount(own[:, j], minlength=len(CANDS)) / 4000 for j in range(K)], axis=1)
    assert (np.abs(freq - p) <= 4 * np.sqrt(p * (1 - p) / 4000) + 1e-12).all(), (freq, p)
