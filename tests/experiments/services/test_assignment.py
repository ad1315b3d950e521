"""Assignment is a pure function: no database here."""

from collections import Counter

import numpy as np
import pytest
from scipy.stats import chi2_contingency

from experiments.services.assignment import (
    N_BUCKETS,
    ArmSlot,
    NoEligibleArm,
    arm_assign,
    bucket_boundaries,
    bucket_of,
)

USERS = [f"user-{i}" for i in range(100_000)]
ARMS = (ArmSlot(1, 1.0, "active"), ArmSlot(2, 2.0, "active"), ArmSlot(3, 3.0, "active"), ArmSlot(4, 4.0, "active"))


def shares(arms, users=USERS, salt="salt-a"):
    counts = Counter(arm_assign(salt=salt, user_id=u, arms=arms)[0] for u in users)
    return {arm_id: counts[arm_id] / len(users) for arm_id in counts}


def test_the_same_user_always_gets_the_same_bucket_and_arm():
    first = [arm_assign(salt="s", user_id=u, arms=ARMS) for u in USERS[:1000]]
    again = [arm_assign(salt="s", user_id=u, arms=ARMS) for u in USERS[:1000]]
    assert first == again


def test_buckets_cover_the_range_uniformly():
    buckets = np.array([bucket_of(salt="s", user_id=u) for u in USERS])
    assert buckets.min() == 0 and buckets.max() == N_BUCKETS - 1
    # 10 coarse bins of 10,000 expected each: a crude but seeded uniformity check.
    counts = np.bincount(buckets // 1000, minlength=10)
    assert np.abs(counts - 10_000).max() < 500


def test_traffic_shares_match_weights_within_one_percent_over_100k_ids():
    got = shares(ARMS)
    expected = {1: 0.1, 2: 0.2, 3: 0.3, 4: 0.4}
    assert max(abs(got[a] - expected[a]) for a in expected) < 0.01


def test_paused_arm_gets_nobody():
    arms = (ArmSlot(1, 1.0, "active"), ArmSlot(2, 1.0, "paused"), ArmSlot(3, 1.0, "active"))
    got = shares(arms, USERS[:20_000])
    assert set(got) == {1, 3}


def test_retired_arm_gets_nobody():
    arms = (ArmSlot(1, 1.0, "retired"), ArmSlot(2, 1.0, "active"))
    assert set(shares(arms, USERS[:5_000])) == {2}


def test_zero_weight_arm_gets_nobody():
    arms = (ArmSlot(1, 0.0, "active"), ArmSlot(2, 1.0, "active"))
    assert set(shares(arms, USERS[:5_000])) == {2}


def test_promoting_an_arm_moves_everyone_to_it():
    assigned = {arm_assign(salt="s", user_id=u, arms=ARMS, concluded=True, winner_id=2)[0] for u in USERS[:20_000]}
    assert assigned == {2}


def test_no_eligible_arm_is_refused():
    with pytest.raises(NoEligibleArm):
        bucket_boundaries(arms=(ArmSlot(1, 1.0, "paused"), ArmSlot(2, 0.0, "active")))


def test_two_experiments_salts_assign_independently():
    arms = (ArmSlot(1, 1.0, "active"), ArmSlot(2, 1.0, "active"), ArmSlot(3, 1.0, "active"))
    in_a = [arm_assign(salt="experiment-a", user_id=u, arms=arms)[0] for u in USERS]
    in_b = [arm_assign(salt="experiment-b", user_id=u, arms=arms)[0] for u in USERS]
    table = np.zeros((3, 3))
    np.add.at(table, (np.array(in_a) - 1, np.array(in_b) - 1), 1)
    _, p_value, _, _ = chi2_contingency(table)
    assert p_value > 0.001


def test_reweighting_moves_only_a_minority_of_users():
    before = [arm_assign(salt="s", user_id=u, arms=ARMS)[0] for u in USERS[:20_000]]
    reweighted = (ArmSlot(1, 1.5, "active"), *ARMS[1:])
    after = [arm_assign(salt="s", user_id=u, arms=reweighted)[0] for u in USERS[:20_000]]
    moved = sum(b != a for b, a in zip(before, after, strict=True)) / len(before)
    assert moved < 0.15
