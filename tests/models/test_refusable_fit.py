"""partial_fit_unless: a refused update leaves the arm exactly as it was; an accepted one is partial_fit.

The training guard judges a batch by the predictions the arm makes before learning from it. The TF arms
take those from the update's own forward pass and undo the step when the guard refuses, so the refusal
must be exact, and the predictions the guard sees must be the ones ``predict`` gives.
"""

from __future__ import annotations

import numpy as np
import pytest

from models import serialization
from models.registry import make_arm
from tests.models.conftest import KINDS, TF_KINDS, small_params, trained_arm


def _state(arm) -> dict[str, np.ndarray]:
    return serialization.unpack(arm.to_bytes())[1]


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def _batch(world, rows=300, seed=5):
    return next(world.stream(rows, rows, np.random.default_rng(seed)))[0]


# warmup_examples 0: one step per batch (judged from that step's forward pass); 10**9: micro-batches
# (judged from the forward pass before them).
@pytest.mark.parametrize("warmup", [0, 10**9])
@pytest.mark.parametrize("kind", KINDS)
def test_a_refused_update_leaves_the_arm_exactly_as_it_was(kind, warmup, world):
    arm = trained_arm(kind, world, n=1000, params={"warmup_examples": warmup, "warmup_batch": 64}
                      if kind in TF_KINDS else None)
    batch = _batch(world)
    expected = arm.predict(batch)
    before, n_updates, n_seen = _state(arm), arm.n_updates, arm.n_seen
    seen = []

    out, p = arm.partial_fit_unless(batch, lambda q: seen.append(np.array(q)) or True)

    assert out is None
    assert len(seen) == 1
    np.testing.assert_allclose(p, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(seen[0], expected, rtol=1e-5, atol=1e-6)
    _same(before, _state(arm))
    assert (arm.n_updates, arm.n_seen) == (n_updates, n_seen)
    np.testing.assert_array_equal(arm.predict(batch), expected)


@pytest.mark.parametrize("kind", KINDS)
def test_an_accepted_update_is_the_plain_partial_fit(kind, world):
    batch = _batch(world)
    plain = trained_arm(kind, world, n=1000)
    judged = trained_arm(kind, world, n=1000)
    expected = plain.predict(batch)

    plain_out = plain.partial_fit(batch)
    judged_out, p = judged.partial_fit_unless(batch, lambda q: False)

    assert judged_out is not None
    assert judged_out["loss"] == pytest.approx(plain_out["loss"], rel=1e-6)
    np.testing.assert_allclose(p, expected, rtol=1e-5, atol=1e-6)
    _same(_state(plain), _state(judged))


@pytest.mark.parametrize("kind", TF_KINDS)
def test_the_tf_arms_judge_their_update_without_a_separate_prediction(kind, world, monkeypatch):
    arm = make_arm(kind, small_params(kind), seed=0)
    assert arm.fit_can_refuse and not arm.reference_is_prediction
    calls = []
    monkeypatch.setattr(type(arm), "_predict", lambda self, b: calls.append(1) or np.zeros(len(b)))

    arm.partial_fit_unless(_batch(world), lambda q: False)

    assert calls == []


def test_the_default_reference_reuses_the_predictions_the_caller_made(world, monkeypatch):
    arm = trained_arm("ftrl_logreg", world, n=1000)
    batch = _batch(world)
    p = arm.predict(batch)
    monkeypatch.setattr(type(arm), "_predict", lambda self, b: pytest.fail("predicted again"))

    np.testing.assert_array_equal(arm.feedback_reference(batch, p), p)


@pytest.mark.parametrize("kind", TF_KINDS)
def test_a_judge_that_fails_leaves_the_arm_as_it_was(kind, world):
    arm = trained_arm(kind, world, n=1000)
    before = _state(arm)

    def broken(p):
        raise RuntimeError("the judge failed")

    with pytest.raises(RuntimeError):
        arm.partial_fit_unless(_batch(world), broken)

    _same(before, _state(arm))
