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
from models.layers.counts import ItemCounts
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
        p = self.params
        self.counts = ItemCounts(
            buckets=p["buckets"],
            max_position=p["max_position"],
            prior_alpha=p["prior_alpha"],
            prior_beta=p["prior_beta"],
            heads=p["heads"],
        )

    # ---------------------------------------------------------------- model
    def examination(self, position: np.ndarray) -> np.ndarray:
        """Estimated slot CTR relative to slot 1 (1 until data says otherwise)."""
        return self.counts.examination(position)

    def _head_scores(self, item_keys: np.ndarray) -> np.ndarray:
        """Replicate posterior means ``[n, H]`` (a cached table, gathered)."""
        return self.counts.replicate_means(item_keys)

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
        a, b = self.counts.posterior(item_keys)
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
        a, b = self.counts.posterior(ctx.item_keys)
        return thompson.slot_marginals(a, b, np.arange(ctx.n), k, self.params["quad_nodes"])

    def _predict(self, batch: Batch) -> np.ndarray:
        return self.counts.mean(batch.item_keys) * self.counts.examination(batch.position)

    def _fit(self, batch: Batch) -> tuple[np.ndarray, float, dict[str, float]]:
        assert batch.labels is not None
        p = self._predict(batch)
        w = batch.weights()
        # Double-or-nothing bootstrap weights from a hash of the row, so a
        # restored arm replays the same update without any RNG state.
        omega = hashing.double_or_nothing(batch.user_keys, batch.item_keys, self.params["heads"], self.n_updates + 11)
        self.counts.apply(self.counts.stage(batch.item_keys, batch.position, batch.labels, w, omega))
        return p, logloss(batch.labels.astype(np.float64), p, w.astype(np.float64)), {}

    # ---------------------------------------------------------------- state
    def _arrays(self) -> dict[str, np.ndarray]:
        return self.counts.arrays()

    def _load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.counts.load(arrays)
