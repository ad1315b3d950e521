"""The traced forward and train functions of :mod:`models.layers.tower` (its formulas live here)."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from models._tf import tf_module

_B1, _B2, _EPS = 0.9, 0.999, 1e-7
ADAGRAD_INIT = 0.1  # initial accumulator of the table rows' Adagrad


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
    base: np.ndarray  # float32 [m, logit_heads] base margin (the counts' log-odds)
    exam: np.ndarray  # float32 [m] examination probability of the row's slot

    def take(self, idx: slice | np.ndarray) -> RowInputs:
        return RowInputs(
            UserInputs(*(a[idx] for a in self.user)),
            ItemInputs(*(a[idx] for a in self.item)),
            self.base[idx],
            self.exam[idx],
        )


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
        table_lr: dict[str, np.ndarray],
        factors: int,
    ):
        tf = self.tf = tf_module()
        self.layout, self.emb_dim, self.factors = layout, emb_dim, factors
        self.table_lr = {k: tf.constant(v.astype(np.float32)) for k, v in table_lr.items()}
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

    def _split(self, row, other_dim: int):  # type: ignore[no-untyped-def]
        """A table row's parts: embedding, content cross, bias, factors."""
        e = self.emb_dim
        return row[..., :e], row[..., e : e + other_dim], row[..., e + other_dim], row[..., e + other_dim + 1 :]

    def _logit_pad(self, base):  # type: ignore[no-untyped-def]
        """The base margin ``[..., logit_heads]`` padded with zeros for the value heads."""
        if not self.value_heads:
            return base
        pad = [[0, 0]] * (len(base.shape) - 1) + [[0, self.value_heads]]
        return self.tf.pad(base, pad)

    # The two forward passes state the wide part twice (per row, and as a user × item matrix);
    # tests/models/layers/test_tower.py pins them together.
    def _forward_rows(self, v, rows: RowInputs):  # type: ignore[no-untyped-def]
        tf = self.tf
        v = self._dense(v)
        u, i = rows.user, rows.item
        uf, itf = u.feats, i.feats
        ur, ir = tf.gather(v["user"], u.bucket), tf.gather(v["item"], i.bucket)
        _, taste, ub, uv = self._split(ur, itf.shape[-1])
        _, aud, ib, iv = self._split(ir, uf.shape[-1])
        h = tf.nn.relu(self._user_part(v, ur, u) + self._item_part(v, ir, i) + v["b1"])
        out = tf.matmul(h, v["w2"]) + v["b2"]
        wide = (
            tf.reduce_sum(tf.matmul(uf, v["wc"]) * itf, 1)
            + tf.linalg.matvec(uf, v["wu"])
            + tf.linalg.matvec(itf, v["wi"])
            + tf.reduce_sum(taste * itf, 1)
            + tf.reduce_sum(aud * uf, 1)
            + ub
            + ib
            + tf.reduce_sum(uv * iv, 1)
        )
        return out + wide[:, None] * self.heads_mask + self._logit_pad(rows.base)

    def _forward_matrix(self, v, u: UserInputs, i: ItemInputs, base):  # type: ignore[no-untyped-def]
        """Serving outputs ``[m, n, heads]`` for m users × n items with base margins ``[n, logit_heads]``."""
        tf = self.tf
        v = self._dense(v)
        uf, itf = u.feats, i.feats
        ur, ir = tf.gather(v["user"], u.bucket), tf.gather(v["item"], i.bucket)
        _, taste, ub, uv = self._split(ur, itf.shape[-1])
        _, aud, ib, iv = self._split(ir, uf.shape[-1])
        up = self._user_part(v, ur, u) + v["b1"]
        ip = self._item_part(v, ir, i)
        h = tf.nn.relu(up[:, None, :] + ip[None, :, :])
        m, n = tf.shape(h)[0], tf.shape(h)[1]
        out = tf.reshape(tf.matmul(tf.reshape(h, [m * n, -1]), v["w2"]), [m, n, -1]) + v["b2"]
        wide = (
            tf.matmul(tf.matmul(uf, v["wc"]) + taste, itf, transpose_b=True)
            + tf.linalg.matvec(uf, v["wu"])[:, None]
            + tf.linalg.matvec(itf, v["wi"])[None, :]
            + tf.matmul(uf, aud, transpose_b=True)
            + ub[:, None]
            + ib[None, :]
            + tf.matmul(uv, iv, transpose_b=True)
        )
        return out + wide[:, :, None] * self.heads_mask + self._logit_pad(base)[None]

    # ------------------------------------------------------------- train
    def _train_step(self, st, rows: RowInputs, y, w):  # type: ignore[no-untyped-def]
        tf = self.tf
        lh = self.logit_heads
        wv = st["w"]
        names = sorted(wv)
        with tf.GradientTape() as tape:
            out = self._forward_rows(wv, rows)
            z = out[:, :lh]
            # Cross-entropy of p = e·σ(z), stably: log p = log e + log σ(z) and
            # log(1 − p) = log σ(−z) + softplus(z + log(1 − e)).
            e = tf.clip_by_value(rows.exam, 1e-6, 1.0)[:, None]
            log_p = tf.math.log(e) + tf.math.log_sigmoid(z)
            log_q = tf.math.log_sigmoid(-z) + tf.nn.softplus(z + tf.math.log(tf.maximum(1.0 - e, 1e-12)))
            ce = -(y[:, :lh] * log_p + (1.0 - y[:, :lh]) * log_q)
            w_logit = tf.reduce_sum(w[:, :lh])
            losses = [tf.reduce_sum(ce * w[:, :lh]) / tf.maximum(w_logit, 1e-12)]
            if self.value_heads:
                se = tf.square(out[:, lh:] - y[:, lh:])
                losses.append(tf.reduce_sum(se * w[:, lh:]) / tf.maximum(tf.reduce_sum(w[:, lh:]), 1e-12))
            loss = tf.add_n(losses)
        grads = tape.gradient(loss, [wv[n] for n in names])
        # Table rows step on the gradient summed over their examples (per head on average).
        row_scale = w_logit / lh
        step = st["step"]
        t = step + 1.0
        lr_t = self.lr * tf.sqrt(1.0 - _B2**t) / (1.0 - _B1**t)
        updates = []
        ok = tf.math.is_finite(loss)
        for name, g in zip(names, grads, strict=True):
            var, v = wv[name], st["v"][name]
            if isinstance(g, tf.IndexedSlices):
                rows_, inv = tf.unique(g.indices)
                gv = tf.math.unsorted_segment_sum(g.values, inv, tf.shape(rows_)[0]) * row_scale
                v_new = tf.gather(v, rows_) + gv * gv
                w_new = tf.gather(var, rows_) - self.table_lr[name] * gv / tf.sqrt(v_new)
                m_new = None
            else:
                rows_, m = None, st["m"][name]
                m_new = _B1 * m + (1 - _B1) * g
                v_new = _B2 * v + (1 - _B2) * g * g
                w_new = var - lr_t * m_new / (tf.sqrt(v_new) + _EPS)
            ok = tf.logical_and(ok, tf.reduce_all(tf.math.is_finite(w_new)))
            ok = tf.logical_and(ok, tf.reduce_all(tf.math.is_finite(v_new)))
            updates.append((name, rows_, w_new, m_new, v_new))

        def apply() -> Any:
            ops = []
            for name, rows_, w_new, m_new, v_new in updates:
                var, v = wv[name], st["v"][name]
                if rows_ is None:
                    ops += [var.assign(w_new), st["m"][name].assign(m_new), v.assign(v_new)]
                else:
                    ops += [
                        var.scatter_update(tf.IndexedSlices(w_new, rows_)),
                        v.scatter_update(tf.IndexedSlices(v_new, rows_)),
                    ]
            with tf.control_dependencies(ops):
                return step.assign_add(1.0)

        tf.cond(ok, apply, lambda: step + 0.0)
        return out, loss, ok


