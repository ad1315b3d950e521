"""Assignment is a pure function of the configuration and the user's recorded arm: no database here.

``Rows`` plays the ``Assignment`` table: each served user's row is written as
serving writes it (on first sight, and when the recorded arm stopped serving).
"""

from collections import Counter

import numpy as np
import pytest
from scipy.stats import chi2_contingency, chisquare

from experiments.services.assignment import (
    INSERT,
    KEEP,
    MOVE,
    N_BUCKETS,
    ArmSlot,
    NoEligibleArm,
    arm_assign,
    arm_sticky,
    bucket_boundaries,
    bucket_of,
    layout_of,
    move_bucket_of,
)

USERS = [f"user-{i}" for i in range(100_000)]
ARMS = (ArmSlot(1, 1.0, "active"), ArmSlot(2, 2.0, "active"), ArmSlot(3, 3.0, "active"), ArmSlot(4, 4.0, "active"))
FOUR_EQUAL = tuple(ArmSlot(i, 1.0, "active") for i in (1, 2, 3, 4))


def shares(arms, users=USERS, salt="salt-a"):
    counts = Counter(arm_assign(salt=salt, user_id=u, arms=arms)[0] for u in users)
    return {arm_id: counts[arm_id] / len(users) for arm_id in counts}


class Rows:
    """The Assignment table of one experiment, written the way serving writes it."""

    def __init__(self, salt: str = "s"):
        self.salt = salt
        self.arm: dict[str, int] = {}

    def serve(self, users, arms, *, override=None, holdout=None, holdout_running=True) -> dict[str, int]:
        arm, share = holdout or (None, 0.0)
        layout = layout_of(arms=arms, override=override, holdout_arm=arm, holdout_share=share,
                           holdout_running=holdout_running)
        served = {}
        for u in users:
            arm_id, write = arm_sticky(layout=layout, salt=self.salt, user_id=u, bucket=bucket_of(salt=self.salt, user_id=u),
                                       recorded=self.arm.get(u))
            if write in (INSERT, MOVE):
                self.arm[u] = arm_id
            served[u] = arm_id
        return served


def moved(before: dict[str, int], after: dict[str, int]) -> set[str]:
    return {u for u in before if before[u] != after[u]}


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


def test_new_users_follow_the_weights_within_one_percent_over_100k_ids():
    got = shares(ARMS)
    expected = {1: 0.1, 2: 0.2, 3: 0.3, 4: 0.4}
    assert max(abs(got[a] - expected[a]) for a in expected) < 0.01


def test_paused_retired_and_zero_weight_arms_take_no_new_users():
    arms = (ArmSlot(1, 1.0, "active"), ArmSlot(2, 1.0, "paused"), ArmSlot(3, 1.0, "retired"), ArmSlot(4, 0.0, "active"),
            ArmSlot(5, 1.0, "active"))
    assert set(shares(arms, USERS[:20_000])) == {1, 5}


def test_no_eligible_arm_is_refused_for_a_new_user_but_a_recorded_user_keeps_a_zero_weight_arm():
    arms = (ArmSlot(1, 1.0, "paused"), ArmSlot(2, 0.0, "active"))
    with pytest.raises(NoEligibleArm):
        bucket_boundaries(arms=arms)
    with pytest.raises(NoEligibleArm):
        arm_assign(salt="s", user_id="new", arms=arms)
    assert arm_assign(salt="s", user_id="old", arms=arms, recorded=2)[0] == 2


def test_two_experiments_salts_assign_independently():
    arms = (ArmSlot(1, 1.0, "active"), ArmSlot(2, 1.0, "active"), ArmSlot(3, 1.0, "active"))
    in_a = [arm_assign(salt="experiment-a", user_id=u, arms=arms)[0] for u in USERS]
    in_b = [arm_assign(salt="experiment-b", user_id=u, arms=arms)[0] for u in USERS]
    table = np.zeros((3, 3))
    np.add.at(table, (np.array(in_a) - 1, np.array(in_b) - 1), 1)
    _, p_value, _, _ = chi2_contingency(table)
    assert p_value > 0.001


def test_a_reweight_moves_no_returning_user_and_new_users_follow_the_new_weights():
    rows = Rows()
    returning, newcomers = USERS[:20_000], USERS[20_000:60_000]
    before = rows.serve(returning, FOUR_EQUAL)

    reweighted = (ArmSlot(1, 2.0, "active"), *FOUR_EQUAL[1:])
    after = rows.serve(returning, reweighted)
    new = Counter(rows.serve(newcomers, reweighted).values())

    assert moved(before, after) == set()
    assert chisquare([new[a] for a in (1, 2, 3, 4)], [len(newcomers) * w / 5 for w in (2, 1, 1, 1)]).pvalue > 0.001


def test_a_pause_moves_exactly_the_paused_arms_users_and_splits_them_by_the_weights():
    rows = Rows()
    returning = USERS[:20_000]
    before = rows.serve(returning, FOUR_EQUAL)
    on_paused = {u for u, a in before.items() if a == 3}

    paused = (ArmSlot(1, 2.0, "active"), ArmSlot(2, 1.0, "active"), ArmSlot(3, 1.0, "paused"), ArmSlot(4, 1.0, "active"))
    after = rows.serve(returning, paused)
    landed = Counter(after[u] for u in on_paused)

    assert moved(before, after) == on_paused
    assert 3 not in set(after.values())
    # The movers follow the remaining weights 2:1:1 (a contiguous bucket range would land on one or two arms).
    assert chisquare([landed[a] for a in (1, 2, 4)], [len(on_paused) * w / 4 for w in (2, 1, 1)]).pvalue > 0.001


def test_a_resume_moves_nobody_and_the_resumed_arm_gets_only_new_users():
    rows = Rows()
    returning, never_back, newcomers = USERS[:10_000], USERS[10_000:14_000], USERS[20_000:40_000]
    rows.serve(returning + never_back, FOUR_EQUAL)
    paused = tuple(ArmSlot(a.arm_id, 1.0, "paused" if a.arm_id == 3 else "active") for a in FOUR_EQUAL)
    during = rows.serve(returning, paused)

    after = rows.serve(returning + never_back, FOUR_EQUAL)
    new = rows.serve(newcomers, FOUR_EQUAL)

    assert moved(during, after) == set()
    # Users who did not come back during the pause still have their arm: nobody moved them.
    assert all(after[u] == rows.arm[u] for u in never_back)
    assert {u for u in after if after[u] == 3} == {u for u in never_back if rows.arm[u] == 3}
    assert Counter(new.values())[3] / len(newcomers) == pytest.approx(0.25, abs=0.015)


def test_a_promotion_sends_everyone_to_the_winner_and_its_rollback_everyone_back():
    rows = Rows()
    returning = USERS[:5_000]
    before = rows.serve(returning, FOUR_EQUAL)

    promoted = rows.serve(returning + USERS[5_000:6_000], FOUR_EQUAL, override=2)
    restored = rows.serve(returning, FOUR_EQUAL)

    assert set(promoted.values()) == {2}
    assert restored == before


def test_a_moved_user_lands_on_the_same_arm_in_every_process():
    layout = layout_of(arms=(ArmSlot(1, 1.0, "active"), ArmSlot(2, 1.0, "paused"), ArmSlot(3, 1.0, "active")))
    users = USERS[:2_000]
    first = [arm_sticky(layout=layout, salt="s", user_id=u, bucket=bucket_of(salt="s", user_id=u), recorded=2)
             for u in users]
    again = [arm_sticky(layout=layout, salt="s", user_id=u, bucket=bucket_of(salt="s", user_id=u), recorded=2)
             for u in users]

    assert first == again
    assert {write for _, write in first} == {MOVE}


def test_the_move_bucket_is_independent_of_the_first_bucket():
    first = np.array([bucket_of(salt="s", user_id=u) for u in USERS[:50_000]]) // 2500
    second = np.array([move_bucket_of(salt="s", user_id=u, from_arm_id=3) for u in USERS[:50_000]]) // 2500
    table = np.zeros((4, 4))
    np.add.at(table, (first, second), 1)
    assert chi2_contingency(table)[1] > 0.001


def test_a_recorded_serving_arm_is_kept_without_a_write():
    layout = layout_of(arms=FOUR_EQUAL)
    assert arm_sticky(layout=layout, salt="s", user_id="u", bucket=0, recorded=4) == (4, KEEP)
    assert arm_sticky(layout=layout, salt="s", user_id="u", bucket=0, recorded=None) == (1, INSERT)
