"""The shared TensorFlow network of ``deep_ctr``, ``neural_bandit`` and ``q_learning``.

user tower  [user emb | user feats | mean clicked-item emb | mean impressed emb] @ W1u
item tower  [item emb | item feats] @ W1i
hidden      relu(user + item + b1)            (Dense(256, relu) of the seed model,
                                                split so serving computes the user
                                                part once per request)
head h      hidden @ W2[:, h] + b2[h] + wide + slot offset   (logit heads)
wide        user_feats·Wc·item_feats + user_feats·wu + item_feats·wi
            (a first-order part that learns fast, fixing the deep model's slow start)

Keys are hashed into the embedding tables, so unseen users/items work and the
content features keep new items from starting blank. Trained by a compiled
``tf.function`` step: Adam on dense weights, *lazy* Adam on embedding rows (only
rows in the batch move, as in TF's LazyAdam), so a step costs O(batch) whatever
the table size. The step computes every new value first and only assigns them
if the loss and all new values are finite, so a diverging update leaves the
state untouched.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models import hashing
from models._tf import tf_module

_B1, _B2, _EPS = 0.9, 0.999, 1e-7


class Tower:
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
        self.logit_heads, self.value_heads = logit_heads, value_heads
        self.use_history = use_history
        self.lr = lr
        heads = logit_heads + value_heads
        rng = np.random.default_rng(seed)
        du_in = emb_dim + user_dim + (2 * emb_dim if use_history else 0)
        di_in = emb_dim + item_dim

        def glorot(fan_in: int, fan_out: int) -> np.ndarray:
            lim = np.sqrt(6.0 / (fan_in + fan_out))
            return rng.uniform(-lim, lim, (fan_in, fan_out))

        b2 = np.zeros(heads)
        b2[:logit_heads] = np.log(init_ctr / (1 - init_ctr))
        init = {
            "emb_user": rng.normal(0, 0.05, (user_buckets, emb_dim)),
            "emb_item": rng.normal(0, 0.05, (item_buckets, emb_dim)),
            "w1u": glorot(du_in + di_in, hidden)[:du_in],
            "w1i": glorot(du_in + di_in, hidden)[du_in:],
            "b1": np.zeros(hidden),
            "w2": glorot(hidden, heads),
            "b2": b2,
            "pos": np.zeros(max_position),
            "wc": np.zeros((user_dim, item_dim)),
            "wu": np.zeros(user_dim),
            "wi": np.zeros(item_dim),
        }
        self.sparse_names = ("emb_user", "emb_item")
        self.vars = {k: tf.Variable(v.astype(np.float32), name=k) for k, v in init.items()}
        self.m = {k: tf.Variable(tf.zeros_like(v), name=f"m_{k}") for k, v in self.vars.items()}
        self.v = {k: tf.Variable(tf.zeros_like(v), name=f"v_{k}") for k, v in self.vars.items()}
        self.step = tf.Variable(0.0, dtype=tf.float32, name="step")
        f32, i64 = tf.float32, tf.int64
        row_sig = [
            tf.TensorSpec([None], i64),  # user bucket
            tf.TensorSpec([None, user_dim], f32),
            tf.TensorSpec([None, None], i64),  # clicked item buckets
            tf.TensorSpec([None, None], f32),  # clicked mask
            tf.TensorSpec([None, None], i64),  # impressed item buckets
            tf.TensorSpec([None, None], f32),  # impressed mask
            tf.TensorSpec([None], i64),  # item bucket
            tf.TensorSpec([None, item_dim], f32),
            tf.TensorSpec([None], i64),  # slot index (0-based)
        ]
        self._train = tf.function(
            self._train_step,
            input_signature=[*row_sig, tf.TensorSpec([None, heads], f32), tf.TensorSpec([None, heads], f32)],
            reduce_retracing=True,
        )
        self._rows = tf.function(self._forward_rows, input_signature=row_sig)
        self._matrix = tf.function(self._forward_matrix, input_signature=row_sig[:8])

    # ------------------------------------------------------------ inputs
    def encode_users(
        self, keys: np.ndarray, feats: np.ndarray, clicked: np.ndarray, impressed: np.ndarray
    ) -> list[np.ndarray]:
        ib = self.item_buckets
        return [
            hashing.bucket(keys, self.user_buckets, salt=201),
            feats,
            hashing.bucket(clicked, ib, salt=202),
            (clicked >= 0).astype(np.float32),
            hashing.bucket(impressed, ib, salt=202),
            (impressed >= 0).astype(np.float32),
        ]

    def encode_items(self, keys: np.ndarray, feats: np.ndarray) -> list[np.ndarray]:
        return [hashing.bucket(keys, self.item_buckets, salt=202), feats]

    def slots(self, position: np.ndarray) -> np.ndarray:
        return (np.minimum(position, self.max_position) - 1).astype(np.int64)

    # ----------------------------------------------------------- forward
    def _user_part(self, u, uf, ci, cm, ii, im):  # type: ignore[no-untyped-def]
        tf, v = self.tf, self.vars
        parts = [tf.gather(v["emb_user"], u), uf]
        if self.use_history:
            for idx, mask in ((ci, cm), (ii, im)):
                e = tf.gather(v["emb_item"], idx) * mask[:, :, None]
                parts.append(tf.reduce_sum(e, 1) / tf.maximum(tf.reduce_sum(mask, 1, keepdims=True), 1.0))
        return tf.matmul(tf.concat(parts, 1), v["w1u"])

    def _item_part(self, i, itf):  # type: ignore[no-untyped-def]
        tf, v = self.tf, self.vars
        return tf.matmul(tf.concat([tf.gather(v["emb_item"], i), itf], 1), v["w1i"])

    def _heads_mask(self):  # type: ignore[no-untyped-def]
        return self.tf.constant([1.0] * self.logit_heads + [0.0] * self.value_heads, dtype=self.tf.float32)

    def _forward_rows(self, u, uf, ci, cm, ii, im, i, itf, slot):  # type: ignore[no-untyped-def]
        tf, v = self.tf, self.vars
        h = tf.nn.relu(self._user_part(u, uf, ci, cm, ii, im) + self._item_part(i, itf) + v["b1"])
        out = tf.matmul(h, v["w2"]) + v["b2"]
        wide = (
            tf.reduce_sum(tf.matmul(uf, v["wc"]) * itf, 1)
            + tf.linalg.matvec(uf, v["wu"])
            + tf.linalg.matvec(itf, v["wi"])
            + tf.gather(v["pos"], slot)
        )
        return out + wide[:, None] * self._heads_mask()

    def _forward_matrix(self, u, uf, ci, cm, ii, im, i, itf):  # type: ignore[no-untyped-def]
        """Serving outputs ``[m, n, heads]`` at slot 1 for m users × n items."""
        tf, v = self.tf, self.vars
        up = self._user_part(u, uf, ci, cm, ii, im) + v["b1"]
        ip = self._item_part(i, itf)
        h = tf.nn.relu(up[:, None, :] + ip[None, :, :])
        out = tf.einsum("mnh,hk->mnk", h, v["w2"]) + v["b2"]
        wide = (
            tf.matmul(tf.matmul(uf, v["wc"]), itf, transpose_b=True)
            + tf.linalg.matvec(uf, v["wu"])[:, None]
            + tf.linalg.matvec(itf, v["wi"])[None, :]
            + v["pos"][0]
        )
        return out + wide[:, :, None] * self._heads_mask()

    # ------------------------------------------------------------- train
    def _train_step(self, u, uf, ci, cm, ii, im, i, itf, slot, y, w):  # type: ignore[no-untyped-def]
        tf = self.tf
        lh = self.logit_heads
        with tf.GradientTape() as tape:
            out = self._forward_rows(u, uf, ci, cm, ii, im, i, itf, slot)
            ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=y[:, :lh], logits=out[:, :lh])
            losses = [tf.reduce_sum(ce * w[:, :lh]) / tf.maximum(tf.reduce_sum(w[:, :lh]), 1e-12)]
            if self.value_heads:
                se = tf.square(out[:, lh:] - y[:, lh:])
                losses.append(tf.reduce_sum(se * w[:, lh:]) / tf.maximum(tf.reduce_sum(w[:, lh:]), 1e-12))
            loss = tf.add_n(losses)
        names = list(self.vars)
        grads = tape.gradient(loss, [self.vars[n] for n in names])
        t = self.step + 1.0
        lr_t = self.lr * tf.sqrt(1.0 - _B2**t) / (1.0 - _B1**t)
        updates = []
        ok = tf.math.is_finite(loss)
        for name, g in zip(names, grads, strict=True):
            var, m, v = self.vars[name], self.m[name], self.v[name]
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
                return self.step.assign_add(1.0)

        tf.cond(ok, apply, lambda: self.step + 0.0)
        return out, loss, ok

    # -------------------------------------------------------------- api
    def train(self, rows: list[np.ndarray], y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float, bool]:
        out, loss, ok = self._train(*rows, y.astype(np.float32), w.astype(np.float32))
        return out.numpy(), float(loss.numpy()), bool(ok.numpy())

    def forward(self, rows: list[np.ndarray]) -> np.ndarray:
        return self._rows(*rows).numpy()

    def matrix(self, users: list[np.ndarray], items: list[np.ndarray]) -> np.ndarray:
        return self._matrix(*users, *items).numpy()

    def arrays(self) -> dict[str, np.ndarray]:
        out = {f"w/{k}": v.numpy() for k, v in self.vars.items()}
        out.update({f"m/{k}": v.numpy() for k, v in self.m.items()})
        out.update({f"v/{k}": v.numpy() for k, v in self.v.items()})
        out["step"] = np.array(self.step.numpy())
        return out

    def load(self, arrays: dict[str, np.ndarray]) -> None:
        for prefix, table in (("w", self.vars), ("m", self.m), ("v", self.v)):
            for k, var in table.items():
                var.assign(arrays[f"{prefix}/{k}"])
        self.step.assign(float(arrays["step"]))
