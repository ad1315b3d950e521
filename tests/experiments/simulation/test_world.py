"""The ids-only world: the same hidden truth as the latent world, with features that say nothing about it."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.simulation.world import ShopperWorld
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
