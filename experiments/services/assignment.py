"""Sticky assignment of users to arms: pure functions, no database.

A user's bucket is a hash of (experiment salt, user id) into 10,000 buckets, so
it never changes while the salt stays; buckets map to the eligible arms in
id order, each arm taking a contiguous share proportional to its weight. Paused
and retired arms (and arms of weight 0) take no buckets; a concluded
experiment sends every bucket to its winner. The mapping is recomputed from the
current configuration on every request, which is what makes a promotion or a
pause take effect at once; the ``Assignment`` table records the arm each user
was last served by, for analysis.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

N_BUCKETS = 10_000


class NoEligibleArm(Exception):
    """Every arm is paused, retired or weighted 0."""


@dataclass(frozen=True)
class ArmSlot:
    arm_id: int
    weight: float
    status: str  # "active" | "paused" | "retired"


def bucket_of(*, salt: str, user_id: str) -> int:
    """The user's bucket in [0, 10000), stable for a given salt."""
    digest = hashlib.blake2b(f"{salt}\x1f{user_id}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % N_BUCKETS


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


def arm_for_bucket(*, bucket: int, arm_ids: Sequence[int], bounds: Sequence[int]) -> int:
    for arm_id, bound in zip(arm_ids, bounds, strict=True):
        if bucket < bound:
            return arm_id
    return arm_ids[-1]


def arm_assign(
    *, salt: str, user_id: str, arms: Sequence[ArmSlot], concluded: bool = False, winner_id: int | None = None
) -> tuple[int, int]:
    """``(arm_id, bucket)`` serving this user now."""
    bucket = bucket_of(salt=salt, user_id=user_id)
    if concluded and winner_id is not None:
        return winner_id, bucket
    arm_ids, bounds = bucket_boundaries(arms=arms)
    return arm_for_bucket(bucket=bucket, arm_ids=arm_ids, bounds=bounds), bucket
