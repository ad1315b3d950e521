"""The network's forward passes state its formula three times: per row (training), as a traced matrix, and as the
NumPy serving matrix with the catalogue's side cached per state (models.layers.tower_serving)."""

from __future__ import annotations

import numpy as np

from models.layers.tower import ItemInputs, RowInputs, Tower, UserInputs


def _randomised_tower(seed: int) -> Tower:
    tower = Tower(
        user_dim=3, item_dim=4, emb_dim=5, hidden=7, user_buckets=11, item_buckets=13,
        logit_heads=2, value_heads=1, use_history=True, lr=1e-3, sparse_lr=0.05, factor_lr=0.3, factors=3, seed=seed,
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    # Fresh towers start the wide weights at zero; give every parameter a value so each term counts.
    for var in tower.state["w"].values():
        var.assign(rng.normal(0, 0.5, var.shape).astype(np.float32))
    return tower


def _inputs(tower: Tower, rng: np.random.Generator, m: int, n: int, h: int) -> tuple[UserInputs, ItemInputs]:
    users = tower.encode_users(
        rng.integers(0, 1 << 40, m),
        rng.normal(size=(m, 3)).astype(np.float32),
        np.where(rng.random((m, h)) < 0.7, rng.integers(0, 1 << 40, (m, h)), -1),
        np.where(rng.random((m, h)) < 0.7, rng.integers(0, 1 << 40, (m, h)), -1),
    )
    return users, tower.encode_items(rng.integers(0, 1 << 40, n), rng.normal(size=(n, 4)).astype(np.float32))


def test_rows_equal_the_serving_matrix():
    tower = _randomised_tower(seed=3)
    rng = np.random.default_rng(4)
    m, n = 4, 6
    users, items = _inputs(tower, rng, m, n, 3)
    base = rng.normal(size=(n, 2)).astype(np.float32)

    matrix = tower.matrix(users, items, base)

    ui, ii = np.repeat(np.arange(m), n), np.tile(np.arange(n), m)
    rows = RowInputs(
        UserInputs(*(a[ui] for a in users)), ItemInputs(*(a[ii] for a in items)), base[ii], np.ones(m * n, np.float32)
    )
    per_row = tower.forward(rows).reshape(m, n, -1)
    assert matrix.shape == (m, n, 3) and matrix.dtype == np.float32
    np.testing.assert_allclose(per_row, matrix, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tower.matrix_traced(users, items, base), matrix, rtol=1e-5, atol=1e-5)


def _train_once(tower: Tower, rng: np.random.Generator) -> None:
    users, items = _inputs(tower, rng, 8, 8, 3)
    rows = RowInputs(users, items, rng.normal(size=(8, 2)).astype(np.float32), np.ones(8, np.float32))
    y = np.concatenate([rng.integers(0, 2, (8, 2)), rng.normal(size=(8, 1))], axis=1).astype(np.float32)
    _, _, ok = tower.train(rows, y, np.ones_like(y))
    assert ok


def test_the_serving_cache_follows_every_state_change_and_the_catalogue():
    tower = _randomised_tower(seed=7)
    rng = np.random.default_rng(8)
    users, items = _inputs(tower, rng, 2, 5, 3)
    base = rng.normal(size=(5, 2)).astype(np.float32)

    def check() -> np.ndarray:
        got = tower.matrix(users, items, base)
        np.testing.assert_allclose(got, tower.matrix_traced(users, items, base), rtol=1e-5, atol=1e-5)
        return got

    before = check()
    saved = tower.arrays()
    snap = tower.snapshot(RowInputs(users, items, base, np.ones(5, np.float32)))
    # Training moves the dense weights and the rows it touches: the cached item side must not outlive it.
    _train_once(tower, rng)
    trained = check()
    assert not np.allclose(trained, before)
    tower.load(saved)  # a checkpoint load
    np.testing.assert_allclose(check(), before, rtol=1e-6)
    _train_once(tower, rng)
    tower.restore(snap)  # a refused step's rollback
    check()
    # Another catalogue (other keys, or the same keys with new features) is computed afresh.
    items2 = ItemInputs(items.bucket[::-1].copy(), items.feats[::-1].copy())
    np.testing.assert_allclose(tower.matrix(users, items2, base[::-1]), tower.matrix_traced(users, items2, base[::-1]),
                               rtol=1e-5, atol=1e-5)
    items3 = ItemInputs(items.bucket, items.feats + 1.0)
    np.testing.assert_allclose(tower.matrix(users, items3, base), tower.matrix_traced(users, items3, base),
                               rtol=1e-5, atol=1e-5)


def test_the_serving_matrix_without_history_or_value_heads_matches_the_reference():
    tower = Tower(
        user_dim=2, item_dim=3, emb_dim=4, hidden=6, user_buckets=17, item_buckets=19,
        logit_heads=3, value_heads=0, use_history=False, lr=1e-3, sparse_lr=0.05, factor_lr=0.3, factors=2, seed=9,
    )  # fmt: skip
    rng = np.random.default_rng(10)
    for var in tower.state["w"].values():
        var.assign(rng.normal(0, 0.5, var.shape).astype(np.float32))
    users = tower.encode_users(rng.integers(0, 1 << 40, 3), rng.normal(size=(3, 2)).astype(np.float32),
                               np.zeros((3, 0), np.int64), np.zeros((3, 0), np.int64))
    items = tower.encode_items(rng.integers(0, 1 << 40, 7), rng.normal(size=(7, 3)).astype(np.float32))
    base = rng.normal(size=(7, 3)).astype(np.float32)
    np.testing.assert_allclose(tower.matrix(users, items, base), tower.matrix_traced(users, items, base),
                               rtol=1e-5, atol=1e-5)


def test_the_base_margin_moves_only_the_logit_heads():
    tower = _randomised_tower(seed=5)
    rng = np.random.default_rng(6)
    users, items = _inputs(tower, rng, 2, 2, 3)
    ones = np.ones(2, np.float32)
    at = {b: tower.forward(RowInputs(users, items, np.full((2, 2), b, np.float32), ones)) for b in (0.0, 1.5)}
    np.testing.assert_allclose(at[1.5][:, :2] - at[0.0][:, :2], 1.5, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(at[1.5][:, 2], at[0.0][:, 2], rtol=1e-6)


def test_the_factor_columns_learn_a_user_item_interaction_the_other_columns_cannot():
    # Two users with opposite tastes over two items, no features: only the ids (biases
    # cannot, the pattern is an XOR) and the factor dot product can fit it.
    tower = Tower(
        user_dim=1, item_dim=1, emb_dim=2, hidden=4, user_buckets=64, item_buckets=64,
        logit_heads=1, value_heads=0, use_history=False, lr=1e-3, sparse_lr=0.05, factor_lr=0.3, factors=4, seed=1,
    )  # fmt: skip
    u = np.array([1, 1, 2, 2] * 64)
    i = np.array([7, 8, 7, 8] * 64)
    y = np.array([1, 0, 0, 1] * 64, np.float32)[:, None]
    zeros = np.zeros((u.shape[0], 1), np.float32)
    rows = RowInputs(
        tower.encode_users(u, zeros, np.zeros((u.shape[0], 0)), np.zeros((u.shape[0], 0))),
        tower.encode_items(i, zeros),
        zeros,
        np.ones(u.shape[0], np.float32),
    )
    for _ in range(30):
        _, loss, ok = tower.train(rows, y, np.ones_like(y))
        assert ok
    p = 1 / (1 + np.exp(-tower.forward(rows.take(slice(0, 4)))[:, 0]))
    assert p[0] > 0.8 and p[3] > 0.8 and p[1] < 0.2 and p[2] < 0.2, p
