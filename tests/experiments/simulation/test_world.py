"""The ids-only world: the same hidden truth as the latent world, with features that say nothing about it."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from experiments.simulation.world import DEFAULT_AFFINITY, CatalogueView, ShopperWorld
from models.synthetic import SyntheticWorld, WorldConfig


def _recoverable(x: np.ndarray, target: np.ndarray) -> float:
    """Correlation of a least-squares fit of ``target`` on ``x`` (in-sample)."""
    x1 = np.c_[x, np.ones(len(x))]
    coef, *_ = np.linalg.lstsq(x1, target, rcond=None)
    return float(np.corrcoef(x1 @ coef, target)[0, 1])


def test_ids_world_keeps_the_truth_and_drops_the_signal():
    latent = SyntheticWorld(WorldConfig(n_users=2000, n_items=2000), seed=5)
    ids = SyntheticWorld(WorldConfig(n_users=2000, n_items=2000, observable="none"), seed=5)
    # Same keys, latents and biases: the same shop, so the two worlds' arms are comparable.
    np.testing.assert_array_equal(latent.item_keys, ids.item_keys)
    np.testing.assert_array_equal(latent.user_latent, ids.user_latent)
    np.testing.assert_array_equal(latent.item_bias, ids.item_bias)
    assert _recoverable(latent.item_feats, latent.item_bias) > 0.7
    # 2,000 rows and 17 regressors: chance alone gives a correlation near sqrt(17/2000) ≈ 0.09.
    assert _recoverable(ids.item_feats, ids.item_bias) < 0.2
    for d in range(latent.config.latent_dim):
        assert _recoverable(latent.user_feats, latent.user_latent[:, d]) > 0.5
        assert _recoverable(ids.user_feats, ids.user_latent[:, d]) < 0.2
    # Features keep their scale, so nothing downstream (normalisation, hashing) changes.
    assert ids.user_feats.std() == pytest.approx(latent.user_feats.std(), rel=0.1)


def test_an_unknown_observable_is_refused():
    with pytest.raises(ValueError, match="observable"):
        WorldConfig(observable="some")


def test_the_simulator_publishes_noise_in_the_ids_world_and_keeps_its_truth():
    latent = ShopperWorld(seed=3, n_users=50, n_items=50)
    ids = ShopperWorld(seed=3, n_users=50, n_items=50, world="ids")
    user, items = "sim-user-00004", latent.item_ids[:10]
    np.testing.assert_array_equal(latent.relevance(user, items, 0), ids.relevance(user, items, 0))
    assert ids.user_row(user)["attributes"]["vec"] != latent.user_row(user)["attributes"]["vec"]
    assert ids.item_row(items[0])["features"]["vec"] != latent.item_row(items[0])["features"]["vec"]
    with pytest.raises(ValueError, match="world"):
        ShopperWorld(seed=3, world="features")


def test_the_best_single_slate_is_a_counters_ceiling():
    world = ShopperWorld(seed=3, n_users=4, n_items=6)
    catalogue = CatalogueView(world)
    catalogue.add(world.item_ids)
    users = world.user_ids[:2]
    rel = np.array([world.relevance(u, world.item_ids, 0) for u in users])  # [2 users, 6 items]
    exam = world.examine(np.arange(1, 4))
    # By hand: user 0 counted 3 times, user 1 once; the best fixed list ranks items by that mean.
    mean = (3 * rel[0] + rel[1]) / 4
    by_hand = float((exam * np.sort(mean)[::-1][:3]).sum())
    got = world.best_single_slate_clicks({users[0]: 3, users[1]: 1}, catalogue, 3, 0)
    assert got == pytest.approx(by_hand, rel=1e-12)
    # Every fixed slate of 3 in slot order does no better; the personal oracle does at least as well.
    for slate in itertools.permutations(range(6), 3):
        assert float((exam * mean[list(slate)]).sum()) <= got + 1e-12
    oracle = (3 * world.oracle_expected_clicks(users[0], catalogue, 3, 0)
              + world.oracle_expected_clicks(users[1], catalogue, 3, 0)) / 4
    assert oracle >= got
    assert world.best_single_slate_clicks({}, catalogue, 3, 0) == 0.0


def test_affinity_scales_the_personal_part_of_a_click_and_nothing_else():
    plain = ShopperWorld(seed=3, n_users=50, n_items=80, world="ids", affinity=1.6)
    strong = ShopperWorld(seed=3, n_users=50, n_items=80, world="ids", affinity=3.2)
    default = ShopperWorld(seed=3, n_users=50, n_items=80, world="ids")
    user, items = "sim-user-00007", plain.item_ids
    assert (default.scale, strong.scale, plain.scale) == (DEFAULT_AFFINITY, 3.2, 1.6)
    np.testing.assert_array_equal(default.relevance(user, items, 0), strong.relevance(user, items, 0))
    # Same latents and biases: only the weight of <z_u, v_i> in the log-odds doubles.
    logit = np.log(plain.relevance(user, items, 0)) - np.log1p(-plain.relevance(user, items, 0))
    strong_logit = np.log(strong.relevance(user, items, 0)) - np.log1p(-strong.relevance(user, items, 0))
    np.testing.assert_allclose(strong_logit - plain.base - np.array([plain.item(i)[1] for i in items]),
                               2 * (logit - plain.base - np.array([plain.item(i)[1] for i in items])), rtol=1e-9)
    assert strong.item_row(items[0]) == plain.item_row(items[0])
    # More taste, more for a personal ranking to win over the best single slate.

    def headroom(w: ShopperWorld) -> float:
        catalogue = CatalogueView(w)
        catalogue.add(w.item_ids)
        oracle = np.mean([w.oracle_expected_clicks(u, catalogue, 10, 0) for u in w.user_ids])
        return oracle / w.best_single_slate_clicks({u: 1 for u in w.user_ids}, catalogue, 10, 0)

    assert headroom(strong) > headroom(plain) > 1.0
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="affinity"):
            ShopperWorld(seed=3, affinity=bad)
