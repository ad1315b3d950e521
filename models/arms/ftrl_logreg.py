"""``ftrl_logreg``: logistic regression on user×item crosses, FTRL-Proximal.

Follows McMahan et al. (2013), "Ad Click Prediction: a View from the Trenches":
per-coordinate learning rates, L1 (sparsity) and L2, weights materialised
lazily from the (z, n) accumulators. Features of a (user, item, slot) row:

* dense: bias, user feats, item feats, and the user-feature × item-feature
  outer product (user_dim·item_dim crosses — the "user attribute × item
  feature" crosses, which is what carries personalisation here);
* one-hot slot indicator (position bias at train time; serving scores slot 1);
* hashed sparse features in a ``2**hash_bits`` table, so unseen keys need no
  vocabulary: indicators of the item key, the user key and the user-key ×
  item-key cross, plus valued crosses user-key × item-feature j (per-user taste
  for each content feature) and item-key × user-feature j (per-item audience),
  the equivalent of Vowpal Wabbit's ``-q ui``.

Mini-batches: gradients are summed per coordinate and one FTRL step applied per
batch (FTRL's per-coordinate normalisation makes the step size insensitive to
batch size). Because that means few steps early on, the first
``warmup_examples`` are learnt in micro-batches of ``warmup_batch`` (metrics are
still those of the model before the whole batch), and logits carry a fixed
offset ``logit(init_ctr)`` so the first predictions are not 0.5. Exploration: slate ε-greedy, ``P(i at j) = (1-ε)·1[greedy] + ε/n``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models import hashing
from models.base import Arm, EpsilonGreedyRanking
from models.errors import DivergedUpdateError
from models.metrics import logloss
from models.params import Param
from models.types import Batch, Users


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class FTRLLogRegArm(EpsilonGreedyRanking, Arm):
    kind = "ftrl_logreg"
    PARAMS = {
        "alpha": Param(0.05, lo=1e-6, hi=100.0, doc="FTRL α (learning-rate scale)"),
        "beta": Param(1.0, lo=0.0, hi=100.0, doc="FTRL β (learning-rate smoothing)"),
        "l1": Param(0.5, lo=0.0, hi=1e4),
        "l2": Param(1.0, lo=0.0, hi=1e4),
        "hash_bits": Param(18, lo=4, hi=26, doc="hashed key table: 2**hash_bits weights"),
        "max_position": Param(20, lo=1, hi=1000),
        "epsilon": Param(0.05, lo=0.0, hi=1.0, doc="ε of slate ε-greedy"),
        "init_ctr": Param(0.1, lo=1e-4, hi=0.9999, doc="prior CTR: a fixed logit offset"),
        "warmup_examples": Param(20000, lo=0, hi=10**9, doc="examples learnt in small steps"),
        "warmup_batch": Param(32, lo=1, hi=1 << 20, doc="micro-batch size during warm-up"),
    }

    def __init__(self, params: dict[str, Any], seed: int) -> None:
        super().__init__(params, seed)
        du, di = self.params["user_dim"], self.params["item_dim"]
        self.n_dense = 1 + du + di + du * di + self.params["max_position"]
        size = self.n_dense + (1 << self.params["hash_bits"])
        # FTRL starts from w = 0, so there is nothing random to initialise.
        self.z = np.zeros(size, np.float64)
        self.n = np.zeros(size, np.float64)

    # ------------------------------------------------------------ features
    def _weights(self, idx: np.ndarray | slice) -> np.ndarray:
        z, n = self.z[idx], self.n[idx]
        p = self.params
        w = -(z - np.sign(z) * p["l1"]) / ((p["beta"] + np.sqrt(n)) / p["alpha"] + p["l2"])
        return np.where(np.abs(z) > p["l1"], w, 0.0)

    def _dense_x(self, uf: np.ndarray, itf: np.ndarray, position: np.ndarray) -> np.ndarray:
        m = uf.shape[0]
        mp = self.params["max_position"]
        pos = np.zeros((m, mp))
        pos[np.arange(m), np.minimum(position, mp) - 1] = 1.0
        cross = (uf[:, :, None] * itf[:, None, :]).reshape(m, -1)
        return np.concatenate([np.ones((m, 1)), uf, itf, cross, pos], axis=1)

    def _sparse(
        self, user_keys: np.ndarray, item_keys: np.ndarray, uf: np.ndarray, itf: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Hashed sparse features of rows: indices and values ``[m, F]``."""
        nb = 1 << self.params["hash_bits"]
        idx = np.concatenate(
            [
                hashing.bucket(item_keys, nb, salt=101)[:, None],
                hashing.bucket(user_keys, nb, salt=102)[:, None],
                hashing.bucket(hashing.combine(user_keys, item_keys), nb, salt=103)[:, None],
                self._user_x_item_feat(user_keys),
                self._item_x_user_feat(item_keys),
            ],
            axis=1,
        )
        m = user_keys.shape[0]
        val = np.concatenate([np.ones((m, 3)), itf, uf], axis=1)
        return self.n_dense + idx, val

    def _user_x_item_feat(self, user_keys: np.ndarray) -> np.ndarray:
        di = self.params["item_dim"]
        cells = user_keys[:, None] + (np.arange(di, dtype=np.int64) << 50)[None, :]
        return hashing.bucket(cells, 1 << self.params["hash_bits"], salt=104)

    def _item_x_user_feat(self, item_keys: np.ndarray) -> np.ndarray:
        du = self.params["user_dim"]
        cells = item_keys[:, None] + (np.arange(du, dtype=np.int64) << 50)[None, :]
        return hashing.bucket(cells, 1 << self.params["hash_bits"], salt=105)

    def _logits(self, batch: Batch) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
        x = self._dense_x(batch.user_feats, batch.item_feats, batch.position)
        sidx, sval = self._sparse(batch.user_keys, batch.item_keys, batch.user_feats, batch.item_feats)
        w_dense = self._weights(slice(0, self.n_dense))
        logits = x @ w_dense + (self._weights(sidx) * sval).sum(axis=1) + self._offset()
        return logits, x, (sidx, sval)

    def _offset(self) -> float:
        c = self.params["init_ctr"]
        return float(np.log(c / (1 - c)))

    def _score_matrix(self, users: Users, item_keys: np.ndarray, item_feats: np.ndarray) -> np.ndarray:
        """Serving logits ``[m, n]`` at slot 1, without building m·n feature rows."""
        du, di = self.params["user_dim"], self.params["item_dim"]
        w = self._weights(slice(0, self.n_dense))
        o = 1
        w_u, w_i = w[o : o + du], w[o + du : o + du + di]
        w_c = w[o + du + di : o + du + di + du * di].reshape(du, di)
        w_pos1 = w[o + du + di + du * di]
        uf = users.feats.astype(np.float64)
        itf = item_feats.astype(np.float64)
        logits = (w[0] + w_pos1 + self._offset() + uf @ w_u)[:, None] + (itf @ w_i)[None, :]
        logits += (uf @ w_c) @ itf.T
        nb = 1 << self.params["hash_bits"]
        logits += self._weights(self.n_dense + hashing.bucket(item_keys, nb, salt=101))[None, :]
        logits += self._weights(self.n_dense + hashing.bucket(users.keys, nb, salt=102))[:, None]
        pair = hashing.combine(users.keys[:, None], item_keys[None, :])
        logits += self._weights(self.n_dense + hashing.bucket(pair, nb, salt=103))
        w_uxi = self._weights(self.n_dense + self._user_x_item_feat(users.keys))  # [m, di]
        w_ixu = self._weights(self.n_dense + self._item_x_user_feat(item_keys))  # [n, du]
        logits += w_uxi @ itf.T + uf @ w_ixu.T
        return logits

    # ---------------------------------------------------------------- arm
    def _greedy_scores(self, users: Users, item_keys: np.ndarray, item_feats: np.ndarray) -> np.ndarray:
        return _sigmoid(self._score_matrix(users, item_keys, item_feats))

    def _predict(self, batch: Batch) -> np.ndarray:
        return _sigmoid(self._logits(batch)[0])

    def _fit(self, batch: Batch) -> tuple[np.ndarray, float, dict[str, float]]:
        m, mb = len(batch), self.params["warmup_batch"]
        if self.n_seen >= self.params["warmup_examples"] or m <= mb:
            return self._step(batch)
        with np.errstate(over="ignore", invalid="ignore"):
            p_before = self._predict(batch)
        snapshot = (self.z.copy(), self.n.copy())
        total = 0.0
        try:
            for s in range(0, m, mb):
                part = batch.take(slice(s, s + mb))
                total += self._step(part)[1] * float(part.weights().sum())
        except DivergedUpdateError:
            self.z, self.n = snapshot
            raise
        return p_before, total / float(batch.weights().sum()), {"steps": float(-(-m // mb))}

    def _step(self, batch: Batch) -> tuple[np.ndarray, float, dict[str, float]]:
        assert batch.labels is not None
        # Overflow is detected below and refused, so NumPy need not warn about it.
        with np.errstate(over="ignore", invalid="ignore"):
            return self._step_unchecked(batch)

    def _step_unchecked(self, batch: Batch) -> tuple[np.ndarray, float, dict[str, float]]:
        assert batch.labels is not None
        logits, x, (sidx, sval) = self._logits(batch)
        p = _sigmoid(logits)
        y = batch.labels.astype(np.float64)
        w = batch.weights().astype(np.float64)
        r = w * (p - y)  # d(weighted logloss sum)/d(logit)
        touched, inv = np.unique(sidx.ravel(), return_inverse=True)
        g_sparse = np.bincount(inv, (r[:, None] * sval).ravel(), touched.size)
        g = np.concatenate([x.T @ r, g_sparse])
        idx = np.concatenate([np.arange(self.n_dense), touched])
        n_old = self.n[idx]
        n_new = n_old + g * g
        sigma = (np.sqrt(n_new) - np.sqrt(n_old)) / self.params["alpha"]
        z_new = self.z[idx] + g - sigma * self._weights(idx)
        # Validate-then-apply: nothing is written unless all of it is finite.
        if not (np.isfinite(z_new).all() and np.isfinite(n_new).all() and np.isfinite(p).all()):
            raise DivergedUpdateError("ftrl_logreg: non-finite gradient or accumulator")
        self.z[idx] = z_new
        self.n[idx] = n_new
        return p, logloss(y, p, w), {}

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"z": self.z, "n": self.n}

    def _load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.z = arrays["z"].astype(np.float64).copy()
        self.n = arrays["n"].astype(np.float64).copy()
