"""PLACEHOLDER ranker: serves uniformly random slates until ``models.registry`` lands.

It exists only so the serving path can run before the real arms are merged;
:func:`experiments.serving.arms.arm_build` uses it solely when the registry
cannot be imported. Propensities are exact: every item lands in a given slot
with probability 1/n.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.exploration import random_slates
from models.types import Context, Ranking


class PlaceholderRandomArm:
    kind = "placeholder-random"

    def __init__(self, kind: str, params: dict[str, Any], seed: int) -> None:
        self.served_kind = kind
        self.params = {"user_dim": int(params.get("user_dim", 8)), "item_dim": int(params.get("item_dim", 16))}
        self.seed = seed

    def rank(self, ctx: Context, k: int, rng: np.random.Generator) -> Ranking:
        n = ctx.n
        k = min(k, n)
        slate = random_slates(1, n, k, rng)[0]
        return Ranking(slate.astype(np.int64), np.zeros(k), np.full(k, 1.0 / n))
