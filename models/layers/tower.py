"""The shared TensorFlow network of ``deep_ctr``, ``neural_bandit`` and ``q_learning`` (a building block, TFRS-style).

user tower  [user emb | user feats | mean clicked-item emb | mean impressed emb] @ W1u
item tower  [item emb | item feats] @ W1i
hidden      relu(user + item + b1)            (Dense(256, relu) of the seed model,
                                                split so serving computes the user
                                                part once per request)
head h      hidden @ W2[:, h] + b2[h] + wide + slot offset   (logit heads)
wide        user_feats·Wc·item_feats + user_feats·wu + item_feats·wi
            + taste[user]·item_feats + audience[item]·user_feats
            (a first-order part that learns fast, fixing the deep model's slow start;
            the hashed per-user taste for content features and per-item audience
            vectors are the crosses Vowpal Wabbit's ``-q ui`` would build)

Keys are hashed into the embedding tables, so unseen users/items work and the
content features keep new items from starting blank. Trained by a compiled
``tf.function`` step: Adam on dense weights, *lazy* Adam on embedding rows (only
rows in the batch move, as in TF's LazyAdam), so a step costs O(batch) whatever
the table size. The step computes every new value first and only assigns them
if the loss and all new values are finite, so a diverging update leaves the
state untouched.

The compiled functions take the variables as an argument and are cached per
architecture, so a second arm of the same shape — e.g. a new model version
hot-swapped in from a checkpoint — reuses the traced graphs instead of paying
seconds of tracing again.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from models import hashing
from models._tf import tf_module

_B1, _B2, _EPS = 0.9, 0.999, 1e-7


class UserInputs(NamedTuple):
    """The encoded user side of m rows (:meth:`Tower.encode_users`)."""

    bucket: np.ndarray  # int64 [m] row of the user table
    feats: np.ndarray  # float32 [m, user_dim]
    clicked: np.ndarray  # int64 [m, h] item-table rows of the clicked history (h = 0 without history)
    clicked_mask: np.ndarray  # float32 [m, h] 1 where the history slot holds an item
    impressed: np.ndarray  # int64 [m, h]
    impressed_mask: np.ndarray  # float32 [m, h]


class ItemInputs(NamedTuple):
    """The encoded item side of m rows (or of n candidates)."""

    bucket: np.ndarray  # int64 [m] row of the item table
    feats: np.ndarray  # float32 [m, item_dim]


class RowInputs(NamedTuple):
    """m (user, item, slot) rows: what training and row scoring feed the network."""

    user: UserInputs
    item: ItemInputs
    slot: np.ndarray  # int64 [m], 0-based

    def take(self, idx: slice | np.ndarray) -> RowInputs:
        return RowInputs(UserInputs(*(a[idx] for a in self.user)), ItemInputs(*(a[idx] for a in self.item)), self.slot[idx])


class _Graphs:
    """Traced forward/train functions for one architecture, shared by all its towers."""

    def __init__(
        self,
        *,
        user_dim: int,
        item_dim: int,
        heads: int,
        logit_heads: int,
        use_history: bool,
        lr: float,
        layout: dict[str, tuple[int, tuple[int, ...]]],
        emb_dim: int,
    ):
        tf = self.tf = tf_module()
        self.layout, self.emb_dim = layout, emb_dim
        self.logit_heads, self.value_heads = logit_heads, heads - logit_heads
        self.use_history, self.lr = use_history, lr
        self.heads_mask = np.array([1.0] * logit_heads + [0.0] * (heads - logit_heads), np.float32)
        # autograph off: the code is plain TF ops with an explicit tf.cond, and
        # skipping the conversion makes the one-off trace cheaper.
        self.train = tf.function(self._train_step, reduce_retracing=True, autograph=False)
        self.rows = tf.function(self._forward_rows, reduce_retracing=True, autograph=False)
        self.matrix = tf.function(self._forward_matrix, reduce_retracing=True, autograph=False)

    # ----------------------------------------------------------- forward
    def _dense(self, v):  # type: ignore[no-untyped-def]
        """Views of the flat dense-parameter vector as named tensors."""
        flat = v["dense"]
        out = dict(v)
        for name, (off, shape) in self.layout.items():
            size = int(np.prod(shape))
            out[name] = self.tf.reshape(flat[off : off + size], shape)
        return out

    def _user_part(self, v, ur, u: UserInputs):  # type: ignore[no-untyped-def]
        tf, e = self.tf, self.emb_dim
        parts = [ur[:, :e], u.feats]
        if self.use_history:
            for idx, mask in ((u.clicked, u.clicked_mask), (u.impressed, u.impressed_mask)):
                emb = tf.gather(v["item"], idx)[:, :, :e] * mask[:, :, None]
                parts.append(tf.reduce_sum(emb, 1) / tf.maximum(tf.reduce_sum(mask, 1, keepdims=True), 1.0))
        return tf.matmul(tf.concat(parts, 1), v["w1u"])

    def _item_part(self, v, ir, i: ItemInputs):  # type: ignore[no-untyped-def]
        return self.tf.matmul(self.tf.concat([ir[:, : self.emb_dim], i.feats], 1), v["w1i"])

    # The two forward passes state the wide part twice (per row, and as a user × item matrix);
    # tests/models/test_tower.py pins them together.
    def _forward_rows(self, v, rows: RowInputs):  # type: ignore[no-untyped-def]
        tf, e = self.tf, self.emb_dim
        v = self._dense(v)
        u, i = rows.user, rows.item
        uf, itf = u.feats, i.feats
        ur, ir = tf.gather(v["user"], u.bucket), tf.gather(v["item"], i.bucket)
        h = tf.nn.relu(self._user_part(v, ur, u) + self._item_part(v, ir, i) + v["b1"])
        out = tf.matmul(h, v["w2"]) + v["b2"]
        wide = (
            tf.reduce_sum(tf.matmul(uf, v["wc"]) * itf, 1)
            + tf.linalg.matvec(uf, v["wu"])
            + tf.linalg.matvec(itf, v["wi"])
            + tf.gather(v["pos"], rows.slot)
            + tf.reduce_sum(ur[:, e:] * itf, 1)
            + tf.reduce_sum(ir[:, e:] * uf, 1)
        )
        return out + wide[:, None] * self.heads_mask

    def _forward_matrix(self, v, u: UserInputs, i: ItemInputs):  # type: ignore[no-untyped-def]
        """Serving outputs ``[m, n, heads]`` at slot 1 for m users × n items."""
        tf, e = self.tf, self.emb_dim
        v = self._dense(v)
        uf, itf = u.feats, i.feats
        ur, ir = tf.gather(v["user"], u.bucket), tf.gather(v["item"], i.bucket)
        up = self._user_part(v, ur, u) + v["b1"]
        ip = self._item_part(v, ir, i)
        h = tf.nn.relu(up[:, None, :] + ip[None, :, :])
        m, n = tf.shape(h)[0], tf.shape(h)[1]
        out = tf.reshape(tf.matmul(tf.reshape(h, [m * n, -1]), v["w2"]), [m, n, -1]) + v["b2"]
        wide = (
            tf.matmul(tf.matmul(uf, v["wc"]) + ur[:, e:], itf, transpose_b=True)
            + tf.linalg.matvec(uf, v["wu"])[:, None]
            + tf.linalg.matvec(itf, v["wi"])[None, :]
            + v["pos"][0]
            + tf.matmul(uf, ir[:, e:], transpose_b=True)
        )
        return out + wide[:, :, None] * self.heads_mask

    # ------------------------------------------------------------- train
    def _train_step(self, st, rows: RowInputs, y, w):  # type: ignore[no-untyped-def]
        tf = self.tf
        lh = self.logit_heads
        wv = st["w"]
        names = sorted(wv)
        with tf.GradientTape() as tape:
            out = self._forward_rows(wv, rows)
            ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=y[:, :lh], logits=out[:, :lh])
            losses = [tf.reduce_sum(ce * w[:, :lh]) / tf.maximum(tf.reduce_sum(w[:, :lh]), 1e-12)]
            if self.value_heads:
                se = tf.square(out[:, lh:] - y[:, lh:])
                losses.append(tf.reduce_sum(se * w[:, lh:]) / tf.maximum(tf.reduce_sum(w[:, lh:]), 1e-12))
            loss = tf.add_n(losses)
        grads = tape.gradient(loss, [wv[n] for n in names])
        step = st["step"]
        t = step + 1.0
        lr_t = self.lr * tf.sqrt(1.0 - _B2**t) / (1.0 - _B1**t)
        updates = []
        ok = tf.math.is_finite(loss)
        for name, g in zip(names, grads, strict=True):
            var, m, v = wv[name], st["m"][name], st["v"][name]
            if isinstance(g, tf.IndexedSlices):
                rows, inv = tf.unique(g.indices)
                gv = tf.math.unsorted_segment_sum(g.values, inv, tf.shape(rows)[0])
                m_new = _B1 * tf.gather(m, rows) + (1 - _B1) * gv
                v_new = _B2 * tf.gather(v, rows) + (1 - _B2) * gv * gv
                w_new = tf.gather(var, rows) - lr_t * m_new / (tf.sqrt(v_new) + _EPS)
            else:
                rows = None
                m_new = _B1 * m + (1 - _B1) * g
                v_new = _B2 * v + (1 - _B2) * g * g
                w_new = var - lr_t * m_new / (tf.sqrt(v_new) + _EPS)
            ok = tf.logical_and(ok, tf.reduce_all(tf.math.is_finite(w_new)))
            ok = tf.logical_and(ok, tf.reduce_all(tf.math.is_finite(v_new)))
            updates.append((var, m, v, rows, w_new, m_new, v_new))

        def apply() -> Any:
            ops = []
            for var, m, v, rows, w_new, m_new, v_new in updates:
                if rows is None:
                    ops += [var.assign(w_new), m.assign(m_new), v.assign(v_new)]
                else:
                    ops += [
                        var.scatter_update(tf.IndexedSlices(w_new, rows)),
                        m.scatter_update(tf.IndexedSlices(m_new, rows)),
                        v.scatter_update(tf.IndexedSlices(v_new, rows)),
                    ]
            with tf.control_dependencies(ops):
                return step.assign_add(1.0)

        tf.cond(ok, apply, lambda: step + 0.0)
        return out, loss, ok


_GRAPHS: dict[tuple, _Graphs] = {}
# Tables indexed by hashed user / item keys (updated sparsely, snapshotted by row).
# "user" rows are [embedding | taste for item features]; "item" rows are
# [embedding | audience weights for user features]: one table per key type
# halves the sparse-update ops per step.
_USER_TABLES = ("user",)
_ITEM_TABLES = ("item",)


class Tower:
    """One network's variables (weights, Adam slots, step) plus its encoders."""

    def __init__(
        self,
        *,
        user_dim: int,
        item_dim: int,
        emb_dim: int,
        hidden: int,
        user_buckets: int,
        item_buckets: int,
        max_position: int,
        logit_heads: int,
        value_heads: int,
        use_history: bool,
        lr: float,
        init_ctr: float,
        seed: int,
    ) -> None:
        tf = self.tf = tf_module()
        self.user_buckets, self.item_buckets = user_buckets, item_buckets
        self.max_position = max_position
        self.use_history = use_history
        heads = logit_heads + value_heads
        rng = np.random.default_rng(seed)
        du_in = emb_dim + user_dim + (2 * emb_dim if use_history else 0)
        di_in = emb_dim + item_dim

        def glorot(fan_in: int, fan_out: int) -> np.ndarray:
            lim = np.sqrt(6.0 / (fan_in + fan_out))
            return rng.uniform(-lim, lim, (fan_in, fan_out))

        b2 = np.zeros(heads)
        b2[:logit_heads] = np.log(init_ctr / (1 - init_ctr))
        w1 = glorot(du_in + di_in, hidden)
        dense = {
            "w1u": w1[:du_in],
            "w1i": w1[du_in:],
            "b1": np.zeros(hidden),
            "w2": glorot(hidden, heads),
            "b2": b2,
            "pos": np.zeros(max_position),
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
        init = {
            "user": np.concatenate(
                [rng.normal(0, 0.05, (user_buckets, emb_dim)), np.zeros((user_buckets, item_dim))], axis=1
            ),
            "item": np.concatenate(
                [rng.normal(0, 0.05, (item_buckets, emb_dim)), np.zeros((item_buckets, user_dim))], axis=1
            ),
            "dense": np.concatenate([a.ravel() for a in dense.values()]),
        }
        key = (user_dim, item_dim, heads, logit_heads, use_history, lr, emb_dim, tuple(layout.items()))
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
            )
        self.graphs = _GRAPHS[key]
        self.state = {
            "w": {k: tf.Variable(v.astype(np.float32), name=k) for k, v in init.items()},
            "m": {k: tf.Variable(np.zeros(v.shape, np.float32), name=f"m_{k}") for k, v in init.items()},
            "v": {k: tf.Variable(np.zeros(v.shape, np.float32), name=f"v_{k}") for k, v in init.items()},
            "step": tf.Variable(0.0, dtype=tf.float32, name="step"),
        }

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

    def slots(self, position: np.ndarray) -> np.ndarray:
        return (np.minimum(position, self.max_position) - 1).astype(np.int64)

    # -------------------------------------------------------------- api
    def train(self, rows: RowInputs, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float, bool]:
        out, loss, ok = self.graphs.train(self.state, rows, y.astype(np.float32), w.astype(np.float32))
        return out.numpy(), float(loss.numpy()), bool(ok.numpy())

    def forward(self, rows: RowInputs) -> np.ndarray:
        return self.graphs.rows(self.state["w"], rows).numpy()

    def matrix(self, users: UserInputs, items: ItemInputs) -> np.ndarray:
        return self.graphs.matrix(self.state["w"], users, items).numpy()

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
        self.state["step"].assign(snap["step"])
        for part in ("w", "m", "v"):
            for name, var in self.state[part].items():
                idx, val = snap[(part, name)]
                if idx is None:
                    var.assign(val)
                else:
                    var.scatter_update(self.tf.IndexedSlices(val, idx))

    def arrays(self) -> dict[str, np.ndarray]:
        out = {f"{p}/{k}": v.numpy() for p in ("w", "m", "v") for k, v in self.state[p].items()}
        out["step"] = np.array(self.state["step"].numpy())
        return out

    def load(self, arrays: dict[str, np.ndarray]) -> None:
        for p in ("w", "m", "v"):
            for k, var in self.state[p].items():
                var.assign(arrays[f"{p}/{k}"])
        self.state["step"].assign(float(arrays["step"]))
