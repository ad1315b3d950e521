"""Holdouts in sticky assignment, pure: who is held out, that the others still split by the weights, that a
promotion keeps the holdout and that ending it moves exactly the held-out users."""

from collections import Counter

import numpy as np
import pytest
from scipy.stats import chi2_contingency, chisquare

from experiments.services.assignment import (
    INSERT,
    KEEP,
    MOVE,
    ArmSlot,
    bucket_of,
    holdout_bucket_of,
    holdout_split,
    layout_of,
)
from tests.experiments.services.test_assignment import USERS, Rows

# Arm 9 is the baseline; 1-3 race with weights 1:1:2.
ARMS = (ArmSlot(1, 1.0, "active"), ArmSlot(2, 1.0, "active"), ArmSlot(3, 2.0, "active"), ArmSlot(9, 0.0, "active"))


def test_holdout_split_gives_the_share_to_the_baseline_and_the_rest_by_weight():
    split = holdout_split({"a": 1.0, "b": 3.0, "base": 0.0}, holdout="base", share=0.2)
    assert split == pytest.approx({"a": 0.2, "b": 0.6, "base": 0.2})
    assert list(split) == ["a", "b", "base"]
    assert holdout_split({"a": 1.0}, holdout=None, share=0.2) == {"a": 1.0}
    assert holdout_split({"a": 1.0, "base": 0.0}, holdout="base", share=0.0) == {"a": 1.0, "base": 0.0}


def test_the_held_out_share_is_the_configured_share_and_only_they_see_the_baseline():
    rows = Rows()
    served = rows.serve(USERS, ARMS, holdout=(9, 0.1))
    counts = Counter(served.values())

    held = {u for u in USERS if holdout_bucket_of(salt=rows.salt, user_id=u) < 1_000}
    assert {u for u, arm in served.items() if arm == 9} == held
    assert abs(counts[9] / len(USERS) - 0.1) < 0.004  # 100k users: ~4 sd
    others = [counts[1], counts[2], counts[3]]
    assert chisquare(others, f_exp=np.array([0.25, 0.25, 0.5]) * sum(others)).pvalue > 0.001


def test_holdout_membership_is_independent_of_the_arm_bucket():
    held = np.array([holdout_bucket_of(salt="s", user_id=u) < 2_000 for u in USERS[:50_000]], dtype=int)
    quarter = np.array([bucket_of(salt="s", user_id=u) for u in USERS[:50_000]]) // 2_500
    table = np.zeros((2, 4))
    np.add.at(table, (held, quarter), 1)
    assert chi2_contingency(table)[1] > 0.001


def test_a_promotion_keeps_the_holdout_and_ending_it_moves_exactly_the_held_out_users_to_the_winner():
    rows = Rows()
    users = USERS[:20_000]
    before = rows.serve(users, ARMS, holdout=(9, 0.1))
    promoted = rows.serve(users, ARMS, holdout=(9, 0.1), override=3)
    held = {u for u, arm in before.items() if arm == 9}
    assert {u for u, arm in promoted.items() if arm == 9} == held
    assert {promoted[u] for u in users if u not in held} == {3}

    ended = rows.serve(users, ARMS, holdout=(9, 0.1), holdout_running=False, override=3)
    assert set(ended.values()) == {3}
    assert rows.arm == before  # an override writes no row: a rollback of the promotion finds every user's own arm
    # Without a winner, the released users move as from a paused arm, by the weights; the rest stay put.
    rows2 = Rows()
    first = rows2.serve(users, ARMS, holdout=(9, 0.1))
    released = rows2.serve(users, ARMS, holdout=(9, 0.1), holdout_running=False)
    assert {u for u in users if first[u] != released[u]} == {u for u in users if first[u] == 9}
    assert 9 not in set(released.values())


def test_the_writes_of_a_held_out_user():
    layout = layout_of(arms=ARMS, holdout_arm=9, holdout_share=0.5)
    user = next(u for u in USERS if holdout_bucket_of(salt="s", user_id=u) < 5_000)
    from experiments.services.assignment import arm_sticky

    assert arm_sticky(layout=layout, salt="s", user_id=user, bucket=0, recorded=None) == (9, INSERT)
    assert arm_sticky(layout=layout, salt="s", user_id=user, bucket=0, recorded=9) == (9, KEEP)
    assert arm_sticky(layout=layout, salt="s", user_id=user, bucket=0, recorded=1) == (9, MOVE)
    assert 9 not in layout.serving and 9 not in layout.arm_ids
