"""Bad input is refused; a diverging update leaves the state exactly unchanged."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from models.errors import BadBatchError, DivergedUpdateError
from models.types import Batch
from tests.models.conftest import KINDS, trained_arm


def _state(arm) -> dict[str, np.ndarray]:
    from models import serialization

    return serialization.unpack(arm.to_bytes())[1]


def _assert_same_state(before, after):
    assert before.keys() == after.keys()
    for name in before:
        np.testing.assert_array_equal(before[name], after[name], err_msg=name)
        assert np.isfinite(after[name]).all(), name


def _batch(world, rows=64, seed=0):
    return next(world.stream(rows, rows, np.random.default_rng(seed)))[0]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_input_is_refused(kind, bad, world):
    arm = trained_arm(kind, world, n=500)
    before = _state(arm)
    b = _batch(world)
    feats = b.item_feats.copy()
    feats[3, 2] = bad
    with pytest.raises(BadBatchError):
        Batch.make(b.user_keys, b.user_feats, b.item_keys, feats, b.labels, b.position)
    # A Batch built without validation is refused by the arm too.
    with pytest.raises(BadBatchError):
        arm.partial_fit(dataclasses.replace(b, item_feats=feats))
    _assert_same_state(before, _state(arm))


def _diverging(kind, world, rows):
    b = _batch(world, rows)
    if kind == "popularity":
        # Counts overflow: two huge weights on one item sum to inf.
        keys = np.full(rows, b.item_keys[0])
        return dataclasses.replace(b, item_keys=keys, sample_weight=np.full(rows, 1e308))
    feats = b.item_feats.copy()
    feats[rows // 2 :] = 3e38  # finite, but any product overflows
    return dataclasses.replace(b, item_feats=feats)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rows", [64, 400])
def test_diverging_update_is_refused_and_state_unchanged(kind, rows, world):
    # 400 rows exercise the warm-up path, which applies several micro-steps
    # before the overflowing rows arrive and must roll them all back.
    params = {"warmup_examples": 10**6, "warmup_batch": 100} if kind != "popularity" else {}
    arm = trained_arm(kind, world, n=500, params=params)
    before = _state(arm)
    with pytest.raises(DivergedUpdateError):
        arm.partial_fit(_diverging(kind, world, rows))
    _assert_same_state(before, _state(arm))
    # The arm still learns normally afterwards.
    out = arm.partial_fit(_batch(world, 64, seed=3))
    assert np.isfinite(out["loss"])
