"""``deep_ctr``: the seed article's model, learning online.

Hashed user embedding + hashed item embedding + user and item content features
→ Dense(256, relu) → sigmoid, cross-entropy; Adam on the dense weights, Adagrad
on the embedding rows; plus a first-order "wide" part with id biases and a
user·item factorisation term, on top of the item counts' log-odds, with the
counts' examination model for position bias (serving scores slot 1). See
:mod:`models.layers.tower` and :mod:`models.arms.tower_arm`.

Exploration: slate ε-greedy on the predicted CTR,
``P(i at j) = (1-ε)·1[greedy_j = i] + ε/n`` exactly.
"""

from __future__ import annotations

import numpy as np

from models.arms.tower_arm import TOWER_PARAMS, TowerArm
from models.base import EpsilonGreedyRanking
from models.params import Param
from models.types import Users


class DeepCTRArm(EpsilonGreedyRanking, TowerArm):
    kind = "deep_ctr"
    PARAMS = {**TOWER_PARAMS, "epsilon": Param(0.02, lo=0.0, hi=1.0, doc="ε of slate ε-greedy")}

    def _greedy_scores(self, users: Users, item_keys: np.ndarray, item_feats: np.ndarray) -> np.ndarray:
        return self._click_prob(self._matrix(users, item_keys, item_feats))
