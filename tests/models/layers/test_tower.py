"""The network's two forward passes state its formula twice: per row (training) and as a matrix (serving)."""

from __future__ import annotations

import numpy as np

from models.layers.tower import ItemInputs, RowInputs, Tower, UserInputs


def _randomised_tower(seed: int) -> Tower:
    tower = Tower(
        user_dim=3, item_dim=4, emb_dim=5, hidden=7, user_buckets=11, item_buckets=13, max_position=6,
        logit_heads=2, value_heads=1, use_history=True, lr=1e-3, init_ctr=0.1, seed=seed,
    )
    rng = np.random.default_rng(seed)
    # Fresh towers start the wide weights at zero; give every parameter a value so each term counts.
    for var in tower.state["w"].values():
        var.assign(rng.normal(0, 0.5, var.shape).astype(np.float32))
    return tower


def test_rows_at_slot_one_equal_the_serving_matrix():
    tower = _randomised_tower(seed=3)
    rng = np.random.default_rng(4)
    m, n, h = 4, 6, 3
    users = tower.encode_users(
        rng.integers(0, 1 << 40, m),
        rng.normal(size=(m, 3)).astype(np.float32),
        np.where(rng.random((m, h)) < 0.7, rng.integers(0, 1 << 40, (m, h)), -1),
        np.where(rng.random((m, h)) < 0.7, rng.integers(0, 1 << 40, (m, h)), -1),
    )
    items = tower.encode_items(rng.integers(0, 1 << 40, n), rng.normal(size=(n, 4)).astype(np.float32))

    matrix = tower.matrix(users, items)

    ui, ii = np.repeat(np.arange(m), n), np.tile(np.arange(n), m)
    rows = RowInputs(UserInputs(*(a[ui] for a in users)), ItemInputs(*(a[ii] for a in items)), np.zeros(m * n, np.int64))
    per_row = tower.forward(rows).reshape(m, n, -1)
    assert matrix.shape == (m, n, 3)
    np.testing.assert_allclose(per_row, matrix, rtol=1e-5, atol=1e-5)


def test_a_later_slot_moves_only_the_logit_heads_by_its_offset():
    tower = _randomised_tower(seed=5)
    rng = np.random.default_rng(6)
    users = tower.encode_users(rng.integers(0, 99, 2), rng.normal(size=(2, 3)).astype(np.float32),
                               np.full((2, 3), -1), np.full((2, 3), -1))
    items = tower.encode_items(rng.integers(0, 99, 2), rng.normal(size=(2, 4)).astype(np.float32))
    at = {slot: tower.forward(RowInputs(users, items, np.full(2, slot, np.int64))) for slot in (0, 3)}

    pos = tower.state["w"]["dense"].numpy()[tower.graphs.layout["pos"][0]:][:6]
    np.testing.assert_allclose(at[3][:, :2] - at[0][:, :2], pos[3] - pos[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(at[3][:, 2], at[0][:, 2], rtol=1e-6)
