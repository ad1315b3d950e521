"""Delta checkpoints: a full snapshot plus the deltas after it restores the trainer's state, per kind."""

from __future__ import annotations

import numpy as np
import pytest

from models import deltas, serialization
from models.errors import StateFormatError
from models.registry import arm_from_bytes, arm_from_state, make_arm
from tests.models.conftest import KINDS, small_params


def _assert_same_state(a, b) -> None:
    ma, aa = a.state()
    mb, ab = b.state()
    assert ma == mb
    assert set(aa) == set(ab)
    for name in aa:
        np.testing.assert_allclose(np.asarray(ab[name], np.float64), np.asarray(aa[name], np.float64), atol=1e-6,
                                   rtol=0, err_msg=name)


@pytest.mark.parametrize("kind", KINDS)
def test_snapshot_plus_deltas_restores_the_trainers_state(kind, world):
    arm = make_arm(kind, small_params(kind), seed=3)
    snapshot = arm.to_bytes()
    tracker = deltas.DeltaTracker.of(arm)
    chain = []
    for batch, _ in world.stream(1800, 300, np.random.default_rng(7)):
        arm.partial_fit(batch)
        chain.append(deltas.delta_of(arm, tracker))
    assert len(chain) == 6 and all(deltas.is_delta(d) for d in chain) and not deltas.is_delta(snapshot)
    restored = arm_from_state(*deltas.state_restore(snapshot, chain))
    _assert_same_state(arm, restored)
    # A serving process part-way along the chain applies only the deltas after its version.
    half = arm_from_state(*deltas.state_restore(snapshot, chain[:2]))
    advanced = deltas.arm_advance(half, chain[2:])
    _assert_same_state(arm, advanced)
    probe = next(iter(world.stream(200, 200, np.random.default_rng(8))))[0]
    np.testing.assert_allclose(advanced.predict(probe), arm.predict(probe), atol=1e-6)
    # arm_advance leaves the arm it started from alone.
    _assert_same_state(half, arm_from_state(*deltas.state_restore(snapshot, chain[:2])))


@pytest.mark.parametrize("kind", KINDS)
def test_a_delta_is_much_smaller_than_the_state_and_idempotent(kind, world):
    params = small_params(kind) | ({"user_buckets": 4096, "item_buckets": 4096} if small_params(kind) else {})
    arm = make_arm(kind, params, seed=4)
    stream = iter(world.stream(1200, 300, np.random.default_rng(9)))
    arm.partial_fit(next(stream)[0])
    tracker = deltas.DeltaTracker.of(arm)
    arm.partial_fit(next(stream)[0])
    delta = deltas.delta_of(arm, tracker)
    full = arm.to_bytes()
    assert len(delta) < 0.5 * len(full), (len(delta), len(full))
    before = arm_from_bytes(full)
    twice = deltas.arm_advance(before, [delta, delta])
    _assert_same_state(arm, twice)
    # Nothing changed since: the next delta holds no arrays, only the metadata.
    empty = deltas.delta_of(arm, tracker)
    assert set(serialization.unpack(empty, formats=(serialization.DELTA_FORMAT,))[1]) == set()


def test_rows_changed_in_bulk_are_written_whole_and_reshaped_arrays_too():
    base = {"table": np.zeros((100, 4)), "vec": np.zeros(10_000), "tiny": np.zeros(3)}
    tracker = deltas.DeltaTracker(base)
    new = {"table": np.ones((100, 4)), "vec": base["vec"].copy(), "tiny": np.array([0.0, 1.0, 0.0])}
    new["vec"][[5, 9_000]] = 2.0
    out = tracker.diff(new)
    assert set(out) == {"full:table", "idx:vec", "rows:vec", "full:tiny"}
    np.testing.assert_array_equal(out["idx:vec"], [5, 9_000])
    grown = {"table": np.ones((120, 4)), "vec": new["vec"], "tiny": new["tiny"]}
    assert set(tracker.diff(grown)) == {"full:table"}


def test_a_delta_of_another_kind_or_garbage_is_refused(world):
    pop = make_arm("popularity", {}, seed=1)
    tracker = deltas.DeltaTracker.of(pop)
    pop.partial_fit(next(iter(world.stream(300, 300, np.random.default_rng(1))))[0])
    delta = deltas.delta_of(pop, tracker)
    ftrl = make_arm("ftrl_logreg", {}, seed=1)
    with pytest.raises(StateFormatError):
        deltas.arm_advance(ftrl, [delta])
    with pytest.raises(StateFormatError):
        deltas.state_restore(pop.to_bytes(), [b"garbage"])
    with pytest.raises(StateFormatError):  # a delta is not a snapshot
        arm_from_bytes(delta)
