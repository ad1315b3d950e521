"""``q_learning``: the seed article's RL form — session state, TD updates.

State s = (user, the user's recent clicked items, recent impressed items in the
session); action a = the item shown; reward r = click. The network (see
:mod:`models.layers.tower`, with history embeddings on) has two heads:

* ``r̂(s, a)`` — click logit, trained by cross-entropy (this is ``predict``);
* ``C(s, a)`` — continuation value, trained by squared TD error towards
  ``max_{a'} Q(s', a')`` computed with the pre-update network.

``Q(s, a) = σ(r̂(s, a)) + γ·C(s, a)``, which is exactly the TD fixed point
``Q = E[r] + γ·E[max Q(s', ·)]``. With ``gamma = 0`` the value head gets zero
weight and Q is the click probability: a contextual bandit.

The next state s' is s with a pushed onto the impressions (and the clicks, if
clicked). The max over a' runs over a candidate pool made of the distinct items
of the batch (at most ``target_pool``), the usual choice for logged slates.

Exploration: slate ε-greedy on Q, ``P(i at j) = (1-ε)·1[greedy_j = i] + ε/n``.
"""

from __future__ import annotations

import numpy as np

from models.arms.tower_arm import TOWER_PARAMS, TowerArm
from models.base import EpsilonGreedyRanking
from models.layers.tower import RowInputs
from models.params import Param
from models.types import Batch, Users


class QLearningArm(EpsilonGreedyRanking, TowerArm):
    kind = "q_learning"
    value_heads = 1
    use_history = True
    PARAMS = {
        **TOWER_PARAMS,
        "gamma": Param(0.5, lo=0.0, hi=0.99, doc="discount γ (0 = contextual bandit)"),
        "epsilon": Param(0.02, lo=0.0, hi=1.0, doc="ε of slate ε-greedy"),
        "target_pool": Param(32, lo=1, hi=4096, doc="candidate actions for max_a' Q(s', a')"),
    }

    def _q(self, out: np.ndarray) -> np.ndarray:
        r = 1.0 / (1.0 + np.exp(-out[..., 0].astype(np.float64)))
        return r + self.params["gamma"] * out[..., 1]

    def _targets(self, batch: Batch, rows: RowInputs) -> tuple[np.ndarray, np.ndarray]:
        assert batch.labels is not None
        m = len(batch)
        sw = batch.weights()
        y = np.zeros((m, 2), np.float32)
        w = np.zeros((m, 2), np.float32)
        y[:, 0], w[:, 0] = batch.labels, sw
        if self.params["gamma"] > 0:
            _, first = np.unique(batch.item_keys, return_index=True)
            pool = np.sort(first)[: self.params["target_pool"]]
            clicked = batch.labels > 0
            imp_next = np.concatenate([batch.item_keys[:, None], batch.impressed[:, :-1]], axis=1)
            clk_next = np.where(
                clicked[:, None],
                np.concatenate([batch.item_keys[:, None], batch.clicked[:, :-1]], axis=1),
                batch.clicked,
            )
            nxt = Users(batch.user_keys, batch.user_feats, clk_next, imp_next)
            q_next = self._q(self._matrix(nxt, batch.item_keys[pool], batch.item_feats[pool]))
            y[:, 1], w[:, 1] = q_next.max(axis=1), sw
        return y, w

    def _greedy_scores(self, users: Users, item_keys: np.ndarray, item_feats: np.ndarray) -> np.ndarray:
        return self._q(self._matrix(users, item_keys, item_feats))
