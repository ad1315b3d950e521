"""Sticky assignment of users to arms: pure functions, no database.

A user's bucket is a hash of (experiment salt, user id) into 10,000 buckets, so
it never changes while the salt stays. **New users** are placed by the current
weights: buckets map to the arms that take new users (active, positive weight)
in id order, each taking a contiguous share proportional to its weight.

**Returning users** keep the arm recorded in their ``Assignment`` row — through
re-weights (a weight only steers new users), through pauses of other arms and
through resumes — as long as that arm still serves: an active arm keeps its
users even at weight 0. Only the users of an arm that stopped serving (paused,
retired) move, to an arm drawn by a *second* hash of (salt, user, the arm they
leave) over the current layout: deterministic, so every serving process moves a
user to the same arm without asking the others, and independent of the first
bucket, so the movers split in proportion to the weights (the first bucket
would send a whole contiguous range to one or two neighbours and the
per-period sample-ratio check would fire). GrowthBook's sticky bucketing is the
reference behaviour.

Experiment-wide overrides do not touch the rows: a concluded experiment sends
everyone to its winner and a stopped one to its control, and a rollback of the
promotion (or a restart) brings every user back to their own arm.

A **holdout** keeps a fixed share of users on a baseline arm for the experiment's whole life: a third hash of
(salt, user) below the share's bound puts a user there, before any override, so a promotion keeps them on the
baseline. It is independent of the first bucket, so the other users still split by the weights. The holdout
arm takes no one else. Once the operator ends the holdout the arm stops serving and its users move as from a
paused arm (to the winner, if there is one).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

N_BUCKETS = 10_000

# What serving must write to the Assignment row after choosing the arm.
KEEP = "keep"  # the row already says this arm (or an override served): no write
INSERT = "insert"  # first sight in this experiment
MOVE = "move"  # the recorded arm stopped serving: the row moves to the new arm


class NoEligibleArm(Exception):
    """Every arm is paused, retired or weighted 0."""


@dataclass(frozen=True)
class ArmSlot:
    arm_id: int
    weight: float
    status: str  # "active" | "paused" | "retired"


@dataclass(frozen=True)
class Layout:
    """Everything assignment needs about an experiment's configuration at one moment."""

    arm_ids: tuple[int, ...]  # arms taking new users, in id order …
    bounds: tuple[int, ...]  # … and their upper bucket bounds
    serving: frozenset[int]  # arms that keep their users (active, any weight)
    override: int | None = None  # winner of a concluded / control of a stopped experiment: serves everyone
    holdout_arm: int | None = None  # the baseline arm of a running holdout …
    holdout_bound: int = 0  # … and the holdout hash's upper bound (share × 10,000)


def bucket_of(*, salt: str, user_id: str) -> int:
    """The user's bucket in [0, 10000), stable for a given salt."""
    digest = hashlib.blake2b(f"{salt}\x1f{user_id}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % N_BUCKETS


def move_bucket_of(*, salt: str, user_id: str, from_arm_id: int) -> int:
    """The bucket that places a user leaving ``from_arm_id``: a second, independent hash."""
    key = f"{salt}\x1fmove\x1f{int(from_arm_id)}\x1f{user_id}".encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") % N_BUCKETS


def holdout_bucket_of(*, salt: str, user_id: str) -> int:
    """The bucket that decides holdout membership: a third hash, independent of the other two."""
    key = f"{salt}\x1fholdout\x1f{user_id}".encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") % N_BUCKETS


def holdout_split(weights: dict[str, float], *, holdout: str | None, share: float) -> dict[str, float]:
    """The expected split of users: the holdout arm takes ``share``, the others share the rest by weight."""
    if holdout is None or share <= 0 or holdout not in weights:
        return dict(weights)
    rest = {name: w for name, w in weights.items() if name != holdout}
    total = sum(rest.values())
    out = {name: (w / total * (1.0 - share) if total > 0 else 0.0) for name, w in rest.items()}
    out[holdout] = share
    return {name: out[name] for name in weights}


def bucket_boundaries(*, arms: Sequence[ArmSlot]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(arm_ids, upper_bounds)``: bucket b goes to the first arm whose bound exceeds b."""
    eligible = sorted((a for a in arms if a.status == "active" and a.weight > 0), key=lambda a: a.arm_id)
    total = sum(a.weight for a in eligible)
    if not eligible or total <= 0:
        raise NoEligibleArm("no active arm with a positive weight")
    ids: list[int] = []
    bounds: list[int] = []
    running = 0.0
    for arm in eligible:
        running += arm.weight
        ids.append(arm.arm_id)
        bounds.append(round(running / total * N_BUCKETS))
    bounds[-1] = N_BUCKETS
    return tuple(ids), tuple(bounds)


def layout_of(*, arms: Sequence[ArmSlot], override: int | None = None, holdout_arm: int | None = None,
              holdout_share: float = 0.0, holdout_running: bool = True) -> Layout:
    """The layout of these arms; no arm takes new users when none is active with a positive weight.

    ``holdout_arm`` is taken out of the weighted split and of the arms that keep their users; while the holdout
    runs it serves the users whose holdout bucket falls under ``holdout_share``.
    """
    live = [a for a in arms if a.arm_id != holdout_arm]
    try:
        arm_ids, bounds = bucket_boundaries(arms=live)
    except NoEligibleArm:
        arm_ids, bounds = (), ()
    serving = frozenset(a.arm_id for a in live if a.status == "active")
    if holdout_arm is None or not holdout_running or holdout_share <= 0:
        return Layout(arm_ids, bounds, serving, override)
    return Layout(arm_ids, bounds, serving, override, holdout_arm, round(holdout_share * N_BUCKETS))


def arm_for_bucket(*, bucket: int, arm_ids: Sequence[int], bounds: Sequence[int]) -> int:
    for arm_id, bound in zip(arm_ids, bounds, strict=True):
        if bucket < bound:
            return arm_id
    return arm_ids[-1]


def arm_sticky(*, layout: Layout, salt: str, user_id: str, bucket: int, recorded: int | None) -> tuple[int, str]:
    """``(arm_id, write)``: the arm serving this user now and what to write to their Assignment row.

    ``recorded`` is the arm of the user's row (None on first sight). Raises
    :class:`NoEligibleArm` when the user needs a new arm and none takes new users.
    """
    if layout.holdout_arm is not None and holdout_bucket_of(salt=salt, user_id=user_id) < layout.holdout_bound:
        if recorded == layout.holdout_arm:
            return recorded, KEEP
        return layout.holdout_arm, (INSERT if recorded is None else MOVE)
    if layout.override is not None:
        return layout.override, KEEP
    if recorded is not None and recorded in layout.serving:
        return recorded, KEEP
    if not layout.arm_ids:
        raise NoEligibleArm("no active arm with a positive weight")
    if recorded is None:
        return arm_for_bucket(bucket=bucket, arm_ids=layout.arm_ids, bounds=layout.bounds), INSERT
    moved = move_bucket_of(salt=salt, user_id=user_id, from_arm_id=recorded)
    return arm_for_bucket(bucket=moved, arm_ids=layout.arm_ids, bounds=layout.bounds), MOVE


def arm_assign(
    *, salt: str, user_id: str, arms: Sequence[ArmSlot], concluded: bool = False, winner_id: int | None = None,
    recorded: int | None = None,
) -> tuple[int, int]:
    """``(arm_id, bucket)`` serving this user now (``recorded``: the arm of their Assignment row, if any)."""
    bucket = bucket_of(salt=salt, user_id=user_id)
    layout = layout_of(arms=arms, override=winner_id if concluded else None)
    arm_id, _ = arm_sticky(layout=layout, salt=salt, user_id=user_id, bucket=bucket, recorded=recorded)
    return arm_id, bucket
