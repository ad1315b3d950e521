"""Offline learning on a seeded 50k-example stream with progressive validation."""

from __future__ import annotations

import numpy as np
import pytest

from models.metrics import RunningMetrics
from models.registry import make_arm
from tests.models.conftest import KINDS

_RESULTS: dict[str, dict[str, float]] = {}


def _progressive(kind: str, world) -> dict[str, float]:
    if kind not in _RESULTS:
        arm = make_arm(kind, None, seed=0)
        rm = RunningMetrics()
        for batch, _ in world.stream(50_000, 1000, np.random.default_rng(42)):
            before = arm.predict(batch)
            out = arm.partial_fit(batch)
            # partial_fit's own "before" numbers are the same progressive ones.
            assert out["logloss_before"] == pytest.approx(RunningMetrics.single_logloss(batch.labels, before), abs=1e-5)
            rm.add(batch.labels, before)
        _RESULTS[kind] = rm.summary()
    return _RESULTS[kind]


@pytest.mark.parametrize("kind", KINDS)
def test_progressive_auc_and_logloss_beat_thresholds(kind, world):
    s = _progressive(kind, world)
    assert s["n"] == 50_000
    assert s["auc"] >= 0.70, s
    assert s["logloss"] < s["base_rate_logloss"], s


@pytest.mark.parametrize("kind", ["deep_ctr", "neural_bandit"])
def test_deep_arms_beat_popularity_on_progressive_auc(kind, world):
    assert _progressive(kind, world)["auc"] > _progressive("popularity", world)["auc"]
