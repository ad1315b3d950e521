"""``popularity``: Beta–Bernoulli Thompson sampling per item (non-personalised).

Each item key hashes to a bucket of Beta(a, b) pseudo-counts over the item's
*relevance* θ (its CTR at slot 1). Position bias is handled with the
clicks-over-expected-clicks estimator: a view at slot ``pos`` counts as
``e(pos)`` expected examinations, where ``e(pos)`` is the slot's CTR relative to
slot 1 (from global per-slot counts, estimated before each update). ``predict``
returns ``E[θ]·e(pos)``; serving ranks at slot 1. No user information is used:
this is the baseline the personalised arms must beat.

Two exploration schemes, both with exact propensities (param ``exploration``):

* ``"bootstrap"`` (default) — bootstrap Thompson sampling (Eckles & Kaptein,
  2014): ``heads`` replicate count tables, each observation entering each
  replicate with a double-or-nothing weight (0 or 2, drawn by hashing the row,
  so no RNG state is needed to replay an update), and each replicate's prior
  pseudo-clicks and pseudo-non-clicks scaled by independent hashed U(0, 2), so
  replicates disagree about unseen items and explore them. A request draws a replicate uniformly
  and shows its greedy slate (with prob ``epsilon`` a uniform slate instead):
  ``P(i at j) = (1-ε)·#{h: greedy_h,j = i}/H + ε/n`` — exact, O(H·n).
* ``"thompson"`` — textbook TS: θ ~ Beta(a, b) per candidate, k largest shown.
  Marginals by quadrature (:mod:`models.thompson`); exact up to ~1e-5 but the
  cost grows as candidates × k × nodes incomplete-beta calls, so use it for
  small candidate sets or offline evaluation, not 1,000-item serving.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models import exploration, hashing, thompson
from models.base import Arm
from models.errors import DivergedUpdateError
from models.metrics import logloss
from models.params import Param
from models.types import Batch, Context, Users


class PopularityArm(Arm):
    kind = "popularity"
    PARAMS = {
        "prior_alpha": Param(1.0, lo=1e-6, hi=1e6, doc="Beta prior pseudo-clicks"),
        "prior_beta": Param(1.0, lo=1e-6, hi=1e6, doc="Beta prior pseudo-non-clicks"),
        "buckets": Param(1 << 14, lo=1, hi=1 << 24, doc="hash table size for item keys"),
        "exploration": Param("bootstrap", choices=("bootstrap", "thompson")),
        "heads": Param(16, lo=1, hi=256, doc="bootstrap replicates"),
        "epsilon": Param(0.02, lo=0.0, hi=1.0, doc="uniform-slate mixing (bootstrap mode)"),
        "quad_nodes": Param(8, lo=2, hi=64, doc="Gauss–Legendre nodes per panel (thompson)"),
        "max_position": Param(20, lo=1, hi=1000, doc="slots beyond this share its counts"),
    }

    def __init__(self, params: dict[str, Any], seed: int) -> None:
        super().__init__(params, seed)
        nb, h = self.params["buckets"], self.params["heads"]
        self.clicks = np.zeros(nb, np.float64)
        self.shows = np.zeros(nb, np.float64)
        self.boot_clicks = np.zeros((nb, h), np.float64)
        self.boot_shows = np.zeros((nb, h), np.float64)
        self.pos_clicks = np.zeros(self.params["max_position"], np.float64)
        self.pos_shows = np.zeros(self.params["max_position"], np.float64)
        # Per-bucket, per-replicate random prior: pseudo-clicks α·U(0,2) and
        # pseudo-non-clicks β·U(0,2), independent, so replicates disagree about
        # unseen items (exploration) until data outweighs the prior. A pure
        # function of the bucket index: no storage, no RNG, and serving gathers
        # it instead of hashing n·H values per request.
        cells = np.arange(nb * h, dtype=np.int64).reshape(nb, h)
        self.prior_clicks = self.params["prior_alpha"] * 2.0 * hashing.uniform01(cells, 7)
        self.prior_rest = self.params["prior_beta"] * 2.0 * hashing.uniform01(cells, 8)
        # Serving reads one float32 table; fits refresh the rows they touch.
        self.head_table = self._replicate_means(slice(None)).astype(np.float32)

    # ---------------------------------------------------------------- model
    def _ab(self, item_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b = hashing.bucket(item_keys, self.params["buckets"])
        a = self.params["prior_alpha"] + self.clicks[b]
        # Expected examinations can fall below clicks by noise; keep b > 0.
        rest = np.maximum(self.shows[b] - self.clicks[b], 0.0)
        return a, self.params["prior_beta"] + rest

    def examination(self, position: np.ndarray) -> np.ndarray:
        """Estimated slot CTR relative to slot 1 (1 until data says otherwise)."""
        ctr = (self.pos_clicks + 1.0) / (self.pos_shows + 2.0)
        rel = np.minimum(ctr / ctr[0], 1.0)
        return rel[np.minimum(position, self.params["max_position"]) - 1]

    def _replicate_means(self, rows: np.ndarray | slice) -> np.ndarray:
        a = self.prior_clicks[rows] + self.boot_clicks[rows]
        n = a + self.prior_rest[rows] + np.maximum(self.boot_shows[rows] - self.boot_clicks[rows], 0.0)
        return a / n

    def _head_scores(self, item_keys: np.ndarray) -> np.ndarray:
        """Replicate posterior means ``[n, H]`` (a cached table, gathered)."""
        return self.head_table[hashing.bucket(item_keys, self.params["buckets"])]

    def _rank_many(
        self,
        users: Users,
        item_keys: np.ndarray,
        item_feats: np.ndarray,
        k: int,
        rng: np.random.Generator,
        propensities: bool,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        m = users.keys.shape[0]
        if self.params["exploration"] == "bootstrap":
            hs = self._head_scores(item_keys)
            hs = np.broadcast_to(hs[None], (m, *hs.shape))
            slates, props, chosen = exploration.ensemble_sample(hs, k, self.params["epsilon"], rng)
            return slates, np.take_along_axis(chosen, slates, axis=1), props if propensities else None
        a, b = self._ab(item_keys)
        theta = rng.beta(a, b, size=(m, a.shape[0]))
        slates = exploration.topk(theta, k)
        scores = np.take_along_axis(theta, slates, axis=1)
        if not propensities:
            return slates, scores, None
        kk = slates.shape[1]
        props = np.empty(slates.shape)
        for row in range(m):
            p = thompson.slot_marginals(a, b, slates[row], kk, self.params["quad_nodes"])
            props[row] = p[np.arange(kk), np.arange(kk)]
        # A shown item has positive probability; quadrature can underflow for
        # astronomically unlikely draws, so keep the documented 0 < p bound.
        return slates, scores, np.clip(props, 1e-300, 1.0)

    def _propensity_matrix(self, ctx: Context, k: int) -> np.ndarray:
        if self.params["exploration"] == "bootstrap":
            return exploration.ensemble_matrix(self._head_scores(ctx.item_keys), k, self.params["epsilon"])
        a, b = self._ab(ctx.item_keys)
        return thompson.slot_marginals(a, b, np.arange(ctx.n), k, self.params["quad_nodes"])

    def _predict(self, batch: Batch) -> np.ndarray:
        a, b = self._ab(batch.item_keys)
        return a / (a + b) * self.examination(batch.position)

    def _fit(self, batch: Batch) -> tuple[np.ndarray, float, dict[str, float]]:
        # Overflow is detected and refused below, so NumPy need not warn about it.
        with np.errstate(over="ignore", invalid="ignore"):
            return self._fit_unchecked(batch)

    def _fit_unchecked(self, batch: Batch) -> tuple[np.ndarray, float, dict[str, float]]:
        assert batch.labels is not None
        p = self._predict(batch)
        w = batch.weights().astype(np.float64)
        y = batch.labels.astype(np.float64)
        slot = np.minimum(batch.position, self.params["max_position"]) - 1
        ew = w * self.examination(batch.position)  # expected examinations
        nb, h = self.params["buckets"], self.params["heads"]
        idx = hashing.bucket(batch.item_keys, nb)
        touched, inv = np.unique(idx, return_inverse=True)
        # Double-or-nothing bootstrap weights from a hash of the row, so a
        # restored arm replays the same update without any RNG state.
        omega = hashing.double_or_nothing(batch.user_keys, batch.item_keys, h, self.n_updates + 11)
        bw = omega * w[:, None]
        # Validate-then-apply: compute the touched buckets' new counts first.
        nt = touched.shape[0]
        new_c = self.clicks[touched] + np.bincount(inv, w * y, nt)
        new_s = self.shows[touched] + np.bincount(inv, ew, nt)
        add_bc = np.zeros((nt, h))
        add_bs = np.zeros((nt, h))
        np.add.at(add_bc, inv, bw * y[:, None])
        np.add.at(add_bs, inv, omega * ew[:, None])
        new_bc = self.boot_clicks[touched] + add_bc
        new_bs = self.boot_shows[touched] + add_bs
        mp = self.params["max_position"]
        new_pc = self.pos_clicks + np.bincount(slot, w * y, mp)
        new_ps = self.pos_shows + np.bincount(slot, w, mp)
        if not all(np.isfinite(v).all() for v in (new_c, new_s, new_bc, new_bs, new_pc, new_ps)):
            raise DivergedUpdateError("popularity: counts overflowed")
        self.pos_clicks, self.pos_shows = new_pc, new_ps
        self.clicks[touched] = new_c
        self.shows[touched] = new_s
        self.boot_clicks[touched] = new_bc
        self.boot_shows[touched] = new_bs
        self.head_table[touched] = self._replicate_means(touched)
        return p, logloss(y, p, w), {}

    # ---------------------------------------------------------------- state
    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            "clicks": self.clicks,
            "shows": self.shows,
            "boot_clicks": self.boot_clicks,
            "boot_shows": self.boot_shows,
            "pos_clicks": self.pos_clicks,
            "pos_shows": self.pos_shows,
        }

    def _load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        for name in ("clicks", "shows", "boot_clicks", "boot_shows", "pos_clicks", "pos_shows"):
            setattr(self, name, arrays[name].astype(np.float64).copy())
        self.head_table = self._replicate_means(slice(None)).astype(np.float32)
