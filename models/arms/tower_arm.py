"""Common plumbing of the TensorFlow arms (encoding, warm-up, checkpoints)."""

from __future__ import annotations

from typing import Any

import numpy as np

from models.base import Arm
from models.errors import DivergedUpdateError
from models.layers.tower import RowInputs, Tower, UserInputs
from models.params import Param
from models.types import Batch, Users

TOWER_PARAMS: dict[str, Param] = {
    "emb_dim": Param(16, lo=1, hi=512, doc="embedding size of hashed user/item keys"),
    "hidden": Param(256, lo=1, hi=8192, doc="width of the Dense(relu) layer"),
    "user_buckets": Param(1 << 15, lo=1, hi=1 << 24, doc="hashed user embedding rows"),
    "item_buckets": Param(1 << 15, lo=1, hi=1 << 24, doc="hashed item embedding rows"),
    "max_position": Param(20, lo=1, hi=1000, doc="slots beyond this share an offset"),
    "lr": Param(0.003, lo=1e-7, hi=1.0, doc="Adam learning rate"),
    "init_ctr": Param(0.1, lo=1e-4, hi=0.9999, doc="prior CTR the output bias starts at"),
    "warmup_examples": Param(20000, lo=0, hi=10**9, doc="examples learnt in small steps"),
    "warmup_batch": Param(128, lo=1, hi=1 << 20, doc="micro-batch size during warm-up"),
}


class TowerArm(Arm):
    """Base of the TF arms: subclasses choose heads, targets and exploration."""

    logit_heads = 1
    value_heads = 0
    use_history = False

    def __init__(self, params: dict[str, Any], seed: int) -> None:
        super().__init__(params, seed)
        p = self.params
        self.tower = Tower(
            user_dim=p["user_dim"],
            item_dim=p["item_dim"],
            emb_dim=p["emb_dim"],
            hidden=p["hidden"],
            user_buckets=p["user_buckets"],
            item_buckets=p["item_buckets"],
            max_position=p["max_position"],
            logit_heads=self._n_logit_heads(),
            value_heads=self.value_heads,
            use_history=self.use_history,
            lr=p["lr"],
            init_ctr=p["init_ctr"],
            seed=self.seed,
        )

    def _n_logit_heads(self) -> int:
        return self.logit_heads

    # ----------------------------------------------------------- encoding
    def _user_rows(self, users: Users) -> UserInputs:
        return self.tower.encode_users(users.keys, users.feats, users.clicked, users.impressed)

    def _rows(self, batch: Batch) -> RowInputs:
        t = self.tower
        return RowInputs(
            t.encode_users(batch.user_keys, batch.user_feats, batch.clicked, batch.impressed),
            t.encode_items(batch.item_keys, batch.item_feats),
            t.slots(batch.position),
        )

    def _matrix(self, users: Users, item_keys: np.ndarray, item_feats: np.ndarray) -> np.ndarray:
        return self.tower.matrix(self._user_rows(users), self.tower.encode_items(item_keys, item_feats))

    # -------------------------------------------------------------- hooks
    def _targets(self, batch: Batch, rows: RowInputs) -> tuple[np.ndarray, np.ndarray]:
        """Per-head targets and weights ``[m, heads]``."""
        assert batch.labels is not None
        y = np.repeat(batch.labels[:, None], self._n_logit_heads(), axis=1)
        w = np.repeat(batch.weights()[:, None], self._n_logit_heads(), axis=1)
        return y, w

    def _click_prob(self, out: np.ndarray) -> np.ndarray:
        lh = self._n_logit_heads()
        return (1.0 / (1.0 + np.exp(-out[..., :lh].astype(np.float64)))).mean(axis=-1)

    # --------------------------------------------------------------- arm
    def _predict(self, batch: Batch) -> np.ndarray:
        return self._click_prob(self.tower.forward(self._rows(batch)))

    def _fit(self, batch: Batch) -> tuple[np.ndarray, float, dict[str, float]]:
        rows = self._rows(batch)
        y, w = self._targets(batch, rows)
        m, mb = len(batch), self.params["warmup_batch"]
        if self.n_seen < self.params["warmup_examples"] and m > mb:
            # Early on, many small steps learn much faster than one big step; the
            # "before" numbers still come from the model before the whole batch.
            p_before = self._click_prob(self.tower.forward(rows))
            snapshot = self.tower.snapshot(rows)
            total, wsum = 0.0, 0.0
            for s in range(0, m, mb):
                sl = slice(s, s + mb)
                _, loss, ok = self.tower.train(rows.take(sl), y[sl], w[sl])
                if not ok:
                    self.tower.restore(snapshot)
                    raise DivergedUpdateError(f"{self.kind}: non-finite update (state restored)")
                ws = float(w[sl, 0].sum())
                total, wsum = total + loss * ws, wsum + ws
            return p_before, total / max(wsum, 1e-12), {"steps": float(-(-m // mb))}
        out, loss, ok = self.tower.train(rows, y, w)
        if not ok:
            raise DivergedUpdateError(f"{self.kind}: non-finite update (state unchanged)")
        return self._click_prob(out), loss, {"steps": 1.0}

    def _arrays(self) -> dict[str, np.ndarray]:
        return self.tower.arrays()

    def _load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.tower.load(arrays)
