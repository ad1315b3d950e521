"""State round trip: a restored arm behaves identically to the original."""

from __future__ import annotations

import numpy as np
import pytest

from models.errors import StateFormatError
from models.registry import arm_from_bytes, make_arm
from tests.models.conftest import KINDS, trained_arm


@pytest.mark.parametrize("kind", KINDS)
def test_restored_arm_matches_after_the_same_next_update(kind, world):
    arm = trained_arm(kind, world, n=1500)
    clone = arm_from_bytes(arm.to_bytes())
    assert type(clone) is type(arm) and clone.params == arm.params
    (nxt, _), (probe, _) = list(world.stream(600, 300, np.random.default_rng(99)))
    m1, m2 = arm.partial_fit(nxt), clone.partial_fit(nxt)
    assert m1["loss"] == pytest.approx(m2["loss"], abs=1e-6)
    np.testing.assert_allclose(arm.predict(probe), clone.predict(probe), atol=1e-6)
    ctx = world.context(3, np.arange(40))
    r1 = arm.rank(ctx, 5, np.random.default_rng(1))
    r2 = clone.rank(ctx, 5, np.random.default_rng(1))
    np.testing.assert_array_equal(r1.indices, r2.indices)
    np.testing.assert_allclose(r1.propensities, r2.propensities, atol=1e-6)


def test_bytes_that_are_not_a_checkpoint_are_refused():
    with pytest.raises(StateFormatError):
        arm_from_bytes(b"not an npz")


def test_a_checkpoint_of_another_kind_is_refused_by_a_kind():
    from models.arms.ftrl_logreg import FTRLLogRegArm

    with pytest.raises(StateFormatError):
        FTRLLogRegArm.from_bytes(make_arm("popularity", {}, 1).to_bytes())
