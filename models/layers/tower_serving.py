"""The serving matrix of :mod:`models.layers.tower` in NumPy, with the catalogue's side computed once per state.

Serving scores one user against the whole catalogue per request. Through the traced TensorFlow function that
costs ~1.4 ms, of which more than half is TensorFlow's Python dispatch (converting and checking a dozen inputs),
not arithmetic. Here the parts that depend only on the model's state and the items — each item's first-layer
contribution, its wide terms, the dense weights as arrays — are computed once per (state generation,
catalogue) and kept; a request then gathers its user's rows and does one broadcast add, a ReLU and two small
matrix products: ~0.4 ms for 1,000 items (bench/profile_serving.py).

The formula is the one of ``_Graphs._forward_matrix`` (tower_graphs.py), which stays the traced reference:
tests/models/layers/test_tower.py pins the two together, and both to the per-row pass training uses.

The cache is keyed on the tower's ``generation``, which every state change through :class:`Tower` (a training
step, ``restore``, ``load``) advances; a changed catalogue (keys or features) recomputes it too.
"""

from __future__ import annotations

import threading
from typing import Any, NamedTuple

import numpy as np

from models.layers.tower_graphs import ItemInputs, UserInputs


class _ItemSide(NamedTuple):
    generation: int
    bucket: np.ndarray  # the catalogue this was computed for (compared by value)
    feats: np.ndarray
    dense: dict[str, np.ndarray]  # the dense weights by name (w1u, b1, w2, b2, wc, wu, wi)
    first: np.ndarray  # [n, hidden] the items' first-layer contribution
    audience: np.ndarray  # [n, user_dim]
    factors: np.ndarray  # [n, factors]
    const: np.ndarray  # [n] the user-independent wide terms: item feats · wi + item bias


class ServingMatrix:
    """``matrix(users, items, base)`` of one tower, in NumPy (see module doc)."""

    def __init__(self, tower: Any) -> None:
        self._tower = tower
        self._items: _ItemSide | None = None
        self._lock = threading.Lock()

    def _cached(self, gen: int, items: ItemInputs) -> _ItemSide | None:
        side = self._items
        if (
            side is not None
            and side.generation == gen
            and np.array_equal(side.bucket, items.bucket)
            and np.array_equal(side.feats, items.feats)
        ):
            return side
        return None

    def _item_side(self, items: ItemInputs) -> _ItemSide:
        t, gen = self._tower, self._tower.generation
        side = self._cached(gen, items)
        if side is not None:
            return side
        with self._lock:  # one computation per (state, catalogue), whichever request thread gets here first
            side = self._cached(gen, items)
            if side is not None:
                return side
            g, w = t.graphs, t.state["w"]
            flat = w["dense"].numpy()
            dense = {name: flat[off : off + int(np.prod(shape))].reshape(shape) for name, (off, shape) in g.layout.items()}
            rows = t.tf.gather(w["item"], items.bucket).numpy()
            e, ud = g.emb_dim, dense["wc"].shape[0]
            feats = np.asarray(items.feats, np.float32)
            side = _ItemSide(
                generation=gen,
                bucket=np.array(items.bucket, copy=True),
                feats=np.array(feats, copy=True),
                dense=dense,
                first=np.concatenate([rows[:, :e], feats], 1) @ dense["w1i"],
                audience=rows[:, e : e + ud],
                factors=rows[:, e + ud + 1 :],
                const=feats @ dense["wi"] + rows[:, e + ud],
            )
            self._items = side
            return side

    def __call__(self, users: UserInputs, items: ItemInputs, base: np.ndarray) -> np.ndarray:
        """Outputs ``[m, n, heads]`` for m users × n items with base margins ``[n, logit_heads]`` (float32)."""
        with np.errstate(all="ignore"):  # as the traced pass: overflow is inf, and the caller's guards judge it
            return self._matrix(users, items, base)

    def _matrix(self, users: UserInputs, items: ItemInputs, base: np.ndarray) -> np.ndarray:
        t = self._tower
        g = t.graphs
        side = self._item_side(items)
        d, e = side.dense, g.emb_dim
        itf = side.feats
        idim = itf.shape[1]
        uf = np.asarray(users.feats, np.float32)
        urow = t.tf.gather(t.state["w"]["user"], users.bucket).numpy()
        parts = [urow[:, :e], uf]
        if g.use_history:
            table = t.state["w"]["item"]
            for idx, mask in ((users.clicked, users.clicked_mask), (users.impressed, users.impressed_mask)):
                mask = np.asarray(mask, np.float32)
                emb = t.tf.gather(table, idx).numpy()[:, :, :e] * mask[:, :, None]
                parts.append(emb.sum(1) / np.maximum(mask.sum(1, keepdims=True), 1.0))
        up = np.concatenate(parts, 1) @ d["w1u"] + d["b1"]
        m, n = up.shape[0], side.first.shape[0]
        hidden = np.maximum(up[:, None, :] + side.first[None, :, :], 0.0).reshape(m * n, -1)
        out = (hidden @ d["w2"]).reshape(m, n, -1) + d["b2"]  # one 2-D product: BLAS, whatever m
        taste, ub, uv = urow[:, e : e + idim], urow[:, e + idim], urow[:, e + idim + 1 :]
        wide = (
            (uf @ d["wc"] + taste) @ itf.T
            + (uf @ d["wu"])[:, None]
            + side.const[None, :]
            + uf @ side.audience.T
            + ub[:, None]
            + uv @ side.factors.T
        )
        base = np.asarray(base, np.float32)
        if g.value_heads:
            base = np.pad(base, [(0, 0), (0, g.value_heads)])
        return (out + wide[:, :, None] * g.heads_mask + base[None]).astype(np.float32, copy=False)
