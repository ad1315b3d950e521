"""The shared TensorFlow network of ``deep_ctr``, ``neural_bandit`` and ``q_learning`` (a building block, TFRS-style).

user tower  [user emb | user feats | mean clicked-item emb | mean impressed emb] @ W1u
item tower  [item emb | item feats] @ W1i
hidden      relu(user + item + b1)            (Dense(256, relu) of the seed model,
                                                split so serving computes the user
                                                part once per request)
head h      hidden @ W2[:, h] + b2[h] + wide + base[h]   (logit heads)
wide        user_feats·Wc·item_feats + user_feats·wu + item_feats·wi
            + taste[user]·item_feats + audience[item]·user_feats
            + bias[user] + bias[item] + factors[user]·factors[item]
base        the item counts' log-odds (:mod:`models.layers.counts`), an input:
            the network learns the correction to closed-form popularity

The click probability at slot ``pos`` is ``e(pos)·σ(head)`` (the examination
model of the counts; ``e`` is an input too), trained by cross-entropy on that
probability, so the heads score relevance and serving ranks at slot 1.

The factorisation term (Rendle's FM, one user·item dot product) and the id
biases learn a user's taste straight from the ids, which the deep part, fed
through a ReLU layer, learns far more slowly online.

Keys are hashed into the embedding tables, so unseen users/items work and the
content features keep new items from starting blank. Trained by a compiled
``tf.function`` step: Adam on the dense weights; **Adagrad on the table rows**
(only rows in the batch move, so a step costs O(batch) whatever the table
size), with the row gradient summed over the row's examples rather than
averaged over the batch, and a per-column rate (``sparse_lr`` for embeddings
and biases, ``factor_lr`` for factors): a row seen a few times moves a real
step, one seen often settles (McMahan et al. 2013; Monolith). The step computes
every new value first and only assigns them if the loss and all new values are
finite, so a diverging update leaves the state untouched.

The compiled functions take the variables as an argument and are cached per
architecture, so a second arm of the same shape — e.g. a new model version
hot-swapped in from a checkpoint — reuses the traced graphs instead of paying
seconds of tracing again.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models import hashing
from models._tf import tf_module
from models.errors import StateFormatError
from models.layers.tower_graphs import ADAGRAD_INIT, ItemInputs, RowInputs, UserInputs, _Graphs
from models.layers.tower_serving import ServingMatrix

__all__ = ["ItemInputs", "RowInputs", "Tower", "UserInputs"]

_GRAPHS: dict[tuple, _Graphs] = {}
# Tables indexed by hashed user / item keys (updated sparsely, snapshotted by row).
# "user" rows are [embedding | taste for item features | bias | factors]; "item" rows
# are [embedding | audience weights for user features | bias | factors]: one table
# per key type halves the sparse-update ops per step.
_USER_TABLES = ("user",)
_ITEM_TABLES = ("item",)


class Tower:
    """One network's variables (weights, optimiser slots, step) plus its encoders."""

    def __init__(
        self,
        *,
        user_dim: int,
        item_dim: int,
        emb_dim: int,
        hidden: int,
        user_buckets: int,
        item_buckets: int,
        logit_heads: int,
        value_heads: int,
        use_history: bool,
        lr: float,
        sparse_lr: float,
        factor_lr: float,
        factors: int,
        seed: int,
    ) -> None:
        tf = self.tf = tf_module()
        self.user_buckets, self.item_buckets = user_buckets, item_buckets
        self.use_history = use_history
        heads = logit_heads + value_heads
        rng = np.random.default_rng(seed)
        du_in = emb_dim + user_dim + (2 * emb_dim if use_history else 0)
        di_in = emb_dim + item_dim

        def glorot(fan_in: int, fan_out: int) -> np.ndarray:
            lim = np.sqrt(6.0 / (fan_in + fan_out))
            return rng.uniform(-lim, lim, (fan_in, fan_out))

        w1 = glorot(du_in + di_in, hidden)
        dense = {
            "w1u": w1[:du_in],
            "w1i": w1[du_in:],
            "b1": np.zeros(hidden),
            "w2": glorot(hidden, heads),
            # The base margin carries the prior CTR, so the heads start at no correction.
            "b2": np.zeros(heads),
            "wc": np.zeros((user_dim, item_dim)),
            "wu": np.zeros(user_dim),
            "wi": np.zeros(item_dim),
        }
        # All dense parameters live in one flat variable: fewer variables means
        # less per-call overhead when the shared graph is invoked.
        layout, off = {}, 0
        for name, arr in dense.items():
            layout[name] = (off, arr.shape)
            off += arr.size

        def table(buckets: int, cross: int) -> np.ndarray:
            return np.concatenate(
                [
                    rng.normal(0, 0.05, (buckets, emb_dim)),
                    np.zeros((buckets, cross + 1)),
                    rng.normal(0, 0.1, (buckets, factors)),
                ],
                axis=1,
            )

        init = {
            "user": table(user_buckets, item_dim),
            "item": table(item_buckets, user_dim),
            "dense": np.concatenate([a.ravel() for a in dense.values()]),
        }
        table_lr = {
            "user": np.array([sparse_lr] * (emb_dim + item_dim + 1) + [factor_lr] * factors),
            "item": np.array([sparse_lr] * (emb_dim + user_dim + 1) + [factor_lr] * factors),
        }
        key = (
            user_dim, item_dim, heads, logit_heads, use_history, lr, sparse_lr, factor_lr, factors, emb_dim,
            tuple(layout.items()),
        )  # fmt: skip
        if key not in _GRAPHS:
            _GRAPHS[key] = _Graphs(
                user_dim=user_dim,
                item_dim=item_dim,
                heads=heads,
                logit_heads=logit_heads,
                use_history=use_history,
                lr=lr,
                layout=layout,
                emb_dim=emb_dim,
                table_lr=table_lr,
                factors=factors,
            )
        self.graphs = _GRAPHS[key]
        # Adam slots (m, v) for the dense vector; an Adagrad accumulator (v) for each table.
        self.state = {
            "w": {k: tf.Variable(v.astype(np.float32), name=k) for k, v in init.items()},
            "m": {"dense": tf.Variable(np.zeros(init["dense"].shape, np.float32), name="m_dense")},
            "v": {
                k: tf.Variable(np.full(v.shape, 0.0 if k == "dense" else ADAGRAD_INIT, np.float32), name=f"v_{k}")
                for k, v in init.items()
            },
            "step": tf.Variable(0.0, dtype=tf.float32, name="step"),
        }
        # Advanced by every state change made through this class (train, restore, load): the serving
        # matrix's cache of the catalogue's side is keyed on it. Change the variables only through these.
        self.generation = 0
        self._serving = ServingMatrix(self)

    # ------------------------------------------------------------ inputs
    def encode_users(
        self, keys: np.ndarray, feats: np.ndarray, clicked: np.ndarray, impressed: np.ndarray
    ) -> UserInputs:
        ib = self.item_buckets
        if not self.use_history:
            # Width-0 history: nothing to hash or feed for arms that ignore it.
            clicked = impressed = np.zeros((keys.shape[0], 0), np.int64)
        return UserInputs(
            hashing.bucket(keys, self.user_buckets, salt=201),
            feats,
            hashing.bucket(clicked, ib, salt=202),
            (clicked >= 0).astype(np.float32),
            hashing.bucket(impressed, ib, salt=202),
            (impressed >= 0).astype(np.float32),
        )

    def encode_items(self, keys: np.ndarray, feats: np.ndarray) -> ItemInputs:
        return ItemInputs(hashing.bucket(keys, self.item_buckets, salt=202), feats)

    # -------------------------------------------------------------- api
    def train(self, rows: RowInputs, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float, bool]:
        out, loss, ok = self.graphs.train(self.state, rows, y.astype(np.float32), w.astype(np.float32))
        self.generation += 1
        return out.numpy(), float(loss.numpy()), bool(ok.numpy())

    def forward(self, rows: RowInputs) -> np.ndarray:
        return self.graphs.rows(self.state["w"], rows).numpy()

    def matrix(self, users: UserInputs, items: ItemInputs, base: np.ndarray) -> np.ndarray:
        """Serving outputs ``[m, n, heads]``: the NumPy pass with the catalogue's side cached per state
        (:mod:`models.layers.tower_serving`)."""
        return self._serving(users, items, base)

    def matrix_traced(self, users: UserInputs, items: ItemInputs, base: np.ndarray) -> np.ndarray:
        """The same outputs through the traced TensorFlow function: the reference the NumPy pass is pinned to."""
        return self.graphs.matrix(self.state["w"], users, items, base.astype(np.float32)).numpy()

    def snapshot(self, rows: RowInputs) -> dict[str, Any]:
        """Copy of everything a step on ``rows`` can change: the dense weights
        and the embedding rows those inputs touch (O(batch), not O(table))."""
        user_rows = np.unique(rows.user.bucket)
        item_rows = np.unique(np.concatenate([rows.item.bucket, rows.user.clicked.ravel(), rows.user.impressed.ravel()]))
        snap: dict[str, Any] = {"step": float(self.state["step"].numpy())}
        for part in ("w", "m", "v"):
            for name, var in self.state[part].items():
                if name in _USER_TABLES:
                    snap[(part, name)] = (user_rows, self.tf.gather(var, user_rows).numpy())
                elif name in _ITEM_TABLES:
                    snap[(part, name)] = (item_rows, self.tf.gather(var, item_rows).numpy())
                else:
                    snap[(part, name)] = (None, var.numpy())
        return snap

    def restore(self, snap: dict[str, Any]) -> None:
        try:
            self.state["step"].assign(snap["step"])
            for part in ("w", "m", "v"):
                for name, var in self.state[part].items():
                    idx, val = snap[(part, name)]
                    if idx is None:
                        var.assign(val)
                    else:
                        var.scatter_update(self.tf.IndexedSlices(val, idx))
        finally:  # after the change, so a concurrent reader cannot cache a half-restored state as the new one
            self.generation += 1

    def arrays(self) -> dict[str, np.ndarray]:
        out = {f"{p}/{k}": v.numpy() for p in ("w", "m", "v") for k, v in self.state[p].items()}
        out["step"] = np.array(self.state["step"].numpy())
        return out

    def load(self, arrays: dict[str, np.ndarray]) -> None:
        try:
            for p in ("w", "m", "v"):
                for k, var in self.state[p].items():
                    a = arrays.get(f"{p}/{k}")
                    if a is None or tuple(a.shape) != tuple(var.shape):
                        raise StateFormatError(f"checkpoint's {p}/{k} does not fit this network (an older layout?)")
                    var.assign(a)
            self.state["step"].assign(float(arrays["step"]))
        finally:
            self.generation += 1
