"""``neural_bandit``: the deep CTR model with Thompson sampling via bootstrapped heads.

The network of ``deep_ctr`` with ``heads`` output heads on the shared trunk
(Osband et al., "Deep Exploration via Bootstrapped DQN", applied to a bandit).
Each training row enters head h with a double-or-nothing bootstrap weight
(0 or 2, hashed from the row and the update count, so replay is exact), so
the heads approximate samples from the posterior over CTR functions. Head h's
base margin is bootstrap replicate h of the item counts, resampled with the
same weights, so the heads disagree about unseen items and explore them.

Ranking draws one head uniformly and shows its greedy slate; with prob ``epsilon``
a uniform random slate instead (full support for off-policy evaluation). The
randomisation is finite, so the propensity is exact, not estimated::

    P(i at j) = (1-ε)·#{h : greedy_h,j = i}/H + ε/n

``predict`` returns the mean of the heads' probabilities.
"""

from __future__ import annotations

import numpy as np

from models import exploration, hashing
from models.arms.tower_arm import TOWER_PARAMS, TowerArm
from models.layers.tower import RowInputs
from models.params import Param
from models.types import Batch, Context, Users


class NeuralBanditArm(TowerArm):
    kind = "neural_bandit"
    PARAMS = {
        **TOWER_PARAMS,
        "heads": Param(8, lo=1, hi=64, doc="bootstrapped heads (posterior samples)"),
        "epsilon": Param(0.01, lo=0.0, hi=1.0, doc="uniform-slate mixing"),
        # Each head's count replicate starts from a prior scaled by U(0, 2): a stronger prior keeps
        # the heads from chasing an unseen item's first lucky click (measured in the bandit loop).
        "prior_strength": Param(20.0, lo=1e-6, hi=1e6, doc="pseudo-views behind init_ctr in the item counts"),
    }

    count_replicates = True

    def _n_logit_heads(self) -> int:
        return self.params["heads"]

    def _count_omega(self, batch: Batch) -> np.ndarray:
        # Head h and count replicate h see the same resample of the data.
        return hashing.double_or_nothing(batch.user_keys, batch.item_keys, self.params["heads"], self.n_updates + 17)

    def _targets(self, batch: Batch, rows: RowInputs) -> tuple[np.ndarray, np.ndarray]:
        y, w = super()._targets(batch, rows)
        return y, w * self._count_omega(batch)

    def _head_probs(self, users: Users, item_keys: np.ndarray, item_feats: np.ndarray) -> np.ndarray:
        out = self._matrix(users, item_keys, item_feats).astype(np.float64)
        return 1.0 / (1.0 + np.exp(-out))  # [m, n, H]

    def _rank_many(
        self,
        users: Users,
        item_keys: np.ndarray,
        item_feats: np.ndarray,
        k: int,
        rng: np.random.Generator,
        propensities: bool,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        hp = self._head_probs(users, item_keys, item_feats)
        slates, props, chosen = exploration.ensemble_sample(hp, k, self.params["epsilon"], rng)
        return slates, np.take_along_axis(chosen, slates, axis=1), props if propensities else None

    def _propensity_matrix(self, ctx: Context, k: int) -> np.ndarray:
        hp = self._head_probs(Users.of(ctx), ctx.item_keys, ctx.item_feats)[0]
        return exploration.ensemble_matrix(hp, k, self.params["epsilon"])
