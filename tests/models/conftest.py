"""Shared fixtures of the model-arm tests: one synthetic world, cached arms.

The ``slow`` marker is registered in tests/conftest.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from models.arms.tower_arm import TowerArm
from models.registry import arm_class, kinds, make_arm
from models.synthetic import SyntheticWorld

KINDS = sorted(kinds())
TF_KINDS = [kind for kind in KINDS if issubclass(arm_class(kind), TowerArm)]
# Small networks keep the non-learning tests fast; learning tests use defaults.
SMALL = {"emb_dim": 4, "hidden": 16, "user_buckets": 256, "item_buckets": 256, "warmup_examples": 0}


def small_params(kind: str) -> dict:
    return dict(SMALL) if kind in TF_KINDS else {}


@pytest.fixture(scope="session")
def world() -> SyntheticWorld:
    return SyntheticWorld(seed=1)


def trained_arm(kind: str, world: SyntheticWorld, n: int = 3000, seed: int = 0, params: dict | None = None):
    """A small arm that has seen n logged examples (so its scores differ)."""
    arm = make_arm(kind, small_params(kind) | (params or {}), seed=seed)
    for batch, _ in world.stream(n, 500, np.random.default_rng(seed + 100)):
        arm.partial_fit(batch)
    return arm
