"""The synthetic world is what every learning test leans on, so check its truth."""

from __future__ import annotations

import numpy as np

from models import hashing
from models.synthetic import SyntheticWorld, WorldConfig


def test_stream_labels_follow_the_reported_true_probabilities():
    world = SyntheticWorld(seed=3)
    ys, ps = [], []
    for batch, p in world.stream(40_000, 5000, np.random.default_rng(0)):
        ys.append(batch.labels)
        ps.append(p)
    y, p = np.concatenate(ys), np.concatenate(ps)
    se = np.sqrt((p * (1 - p)).sum()) / len(p)
    assert abs(y.mean() - p.mean()) < 3 * se
    # Calibration holds in the top decile too, not just on average.
    top = p > np.quantile(p, 0.9)
    assert abs(y[top].mean() - p[top].mean()) < 3 * np.sqrt((p[top] * (1 - p[top])).sum()) / top.sum()


def test_position_bias_and_repeat_penalty_lower_click_probability():
    world = SyntheticWorld(seed=3)
    u, i = np.arange(50), np.arange(50)
    assert (world.click_prob(u, i, 5) < world.click_prob(u, i, 1)).all()
    seen = np.full((50, world.config.history_len), -1)
    seen[:, 0] = i
    assert (world.click_prob(u, i, 1, impressed_idx=seen) < world.click_prob(u, i, 1)).all()


def test_same_seed_same_world_and_features_are_informative():
    a, b = SyntheticWorld(seed=9), SyntheticWorld(seed=9)
    np.testing.assert_array_equal(a.item_keys, b.item_keys)
    np.testing.assert_array_equal(a.user_feats, b.user_feats)
    # Item features carry the item bias: a linear fit recovers much of it.
    x = np.c_[a.item_feats, np.ones(len(a.item_feats))]
    coef, *_ = np.linalg.lstsq(x, a.item_bias, rcond=None)
    assert np.corrcoef(x @ coef, a.item_bias)[0, 1] > 0.7


def test_drift_moves_item_biases():
    world = SyntheticWorld(WorldConfig(drift=0.01), seed=2)
    before = world.item_bias.copy()
    world.advance(1000, np.random.default_rng(0))
    assert np.abs(world.item_bias - before).mean() > 0.05


def _splitmix64(x: int, salt: int) -> int:
    mask = (1 << 64) - 1
    z = (x + salt * 0x9E3779B97F4A7C15 + 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def test_key_hashing_matches_reference_splitmix64():
    # Checkpoints depend on bucket assignment, so it must never drift.
    keys = np.array([0, 1, -1, 2**62 + 12345, -(2**63)], dtype=np.int64)
    got = hashing.bucket(keys, 1000, salt=202)
    want = [_splitmix64(int(k) & ((1 << 64) - 1), 202) % 1000 for k in keys]
    assert got.tolist() == want
