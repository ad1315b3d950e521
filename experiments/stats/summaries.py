"""Sufficient statistics the database hands to the statistics code.

A click-through rate is a ratio of two per-user totals (clicks / impressions)
while randomisation is per user, so impressions of one user are not
independent. Everything the delta method needs about the per-user clusters is
six sums, all additive over users, so SQL (or a live counter) can maintain them
incrementally: ``n_users``, Σn_u, Σc_u, Σn_u², Σc_u², Σn_u·c_u.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

# Relative slack for the consistency checks: the sums may arrive as floats
# (e.g. from SQL ``SUM`` over numeric columns) and rounding must not trip them.
_REL_TOL = 1e-9


def _close_or_less(a: float, b: float) -> bool:
    """a <= b up to floating-point rounding."""
    return a <= b + _REL_TOL * max(1.0, abs(a), abs(b))


def _moments_possible(s, *, cross: bool) -> bool:
    """Cauchy–Schwarz over users: (Σn)² <= K·Σn² and (Σc)² <= K·Σc² (and (Σnc)² <= Σn²·Σc² with ``cross``)."""
    return s.n_users <= 0 or (
        _close_or_less(s.sum_n**2, s.n_users * s.sum_nn)
        and _close_or_less(s.sum_c**2, s.n_users * s.sum_cc)
        and (not cross or _close_or_less(s.sum_nc**2, s.sum_nn * s.sum_cc))
    )


@dataclass(frozen=True, slots=True)
class ClusteredRatioSummary:
    """Per-arm sufficient statistics of a ratio metric clustered by user.

    ``sum_n`` is the arm's impressions and ``sum_c`` its clicks; the three
    second-moment sums are over users (n_u², c_u², n_u·c_u), *not* over
    impressions. Construction raises ``ValueError`` for anything that no real
    set of users could produce.
    """

    n_users: int
    sum_n: float
    sum_c: float
    sum_nn: float
    sum_cc: float
    sum_nc: float

    def __post_init__(self) -> None:
        values = {
            "n_users": self.n_users,
            "sum_n": self.sum_n,
            "sum_c": self.sum_c,
            "sum_nn": self.sum_nn,
            "sum_cc": self.sum_cc,
            "sum_nc": self.sum_nc,
        }
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(float(value)):
                raise ValueError(f"{name} must be finite, got {value!r}")
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        if float(self.n_users) != int(self.n_users):
            raise ValueError(f"n_users must be an integer, got {self.n_users!r}")
        if self.n_users == 0 and any(v != 0 for v in values.values()):
            raise ValueError("a summary with n_users=0 must have all sums equal to 0")
        if not _close_or_less(self.sum_c, self.sum_n):
            raise ValueError(f"clicks ({self.sum_c}) exceed impressions ({self.sum_n})")
        # Per user 0 <= c_u <= n_u, hence c_u² <= n_u·c_u <= n_u².
        if not _close_or_less(self.sum_cc, self.sum_nc) or not _close_or_less(self.sum_nc, self.sum_nn):
            raise ValueError("second moments violate sum_cc <= sum_nc <= sum_nn")
        # Counts are integers, so x² >= x for each user.
        if not _close_or_less(self.sum_n, self.sum_nn) or not _close_or_less(self.sum_c, self.sum_cc):
            raise ValueError("second moments smaller than first moments (counts must be integers)")
        if not _moments_possible(self, cross=False):
            raise ValueError("second moments too small for the number of users (Cauchy-Schwarz)")

    @classmethod
    def empty(cls) -> ClusteredRatioSummary:
        return cls(0, 0, 0, 0, 0, 0)

    @classmethod
    def from_users(cls, impressions: ArrayLike, clicks: ArrayLike) -> ClusteredRatioSummary:
        """Build the summary from per-user impression and click counts."""
        n = np.asarray(impressions, dtype=float)
        c = np.asarray(clicks, dtype=float)
        if n.shape != c.shape or n.ndim != 1:
            raise ValueError("impressions and clicks must be 1-D arrays of equal length")
        return cls(
            n_users=int(n.size),
            sum_n=float(n.sum()),
            sum_c=float(c.sum()),
            sum_nn=float((n * n).sum()),
            sum_cc=float((c * c).sum()),
            sum_nc=float((n * c).sum()),
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, float]) -> ClusteredRatioSummary:
        return cls(
            n_users=int(data["n_users"]),
            sum_n=data["sum_n"],
            sum_c=data["sum_c"],
            sum_nn=data["sum_nn"],
            sum_cc=data["sum_cc"],
            sum_nc=data["sum_nc"],
        )

    def to_dict(self) -> dict[str, float]:
        return {
            "n_users": int(self.n_users),
            "sum_n": float(self.sum_n),
            "sum_c": float(self.sum_c),
            "sum_nn": float(self.sum_nn),
            "sum_cc": float(self.sum_cc),
            "sum_nc": float(self.sum_nc),
        }

    def __add__(self, other: ClusteredRatioSummary) -> ClusteredRatioSummary:
        """Union of two *disjoint* sets of users (sums are additive).

        The database states the same algebra in SQL: ``_FOLD_ADD_SQL`` in
        ``experiments.services.stats_tick`` adds per-period deltas into the running sums
        (and ``rollup_fold`` computes those deltas as :func:`user_update_delta` does).
        A change here must be made there too.
        """
        if not isinstance(other, ClusteredRatioSummary):
            return NotImplemented
        return ClusteredRatioSummary(
            n_users=self.n_users + other.n_users,
            sum_n=self.sum_n + other.sum_n,
            sum_c=self.sum_c + other.sum_c,
            sum_nn=self.sum_nn + other.sum_nn,
            sum_cc=self.sum_cc + other.sum_cc,
            sum_nc=self.sum_nc + other.sum_nc,
        )

    @property
    def impressions(self) -> float:
        return self.sum_n

    @property
    def clicks(self) -> float:
        return self.sum_c


@dataclass(frozen=True, slots=True)
class RatioSummary:
    """Per-arm sums of any ratio of per-user totals Σc_u / Σn_u clustered by user, with non-negative real c_u.

    The same six sums as :class:`ClusteredRatioSummary` (``n`` the denominator, ``c`` the numerator), without the
    count constraints, so revenue (c_u in currency) fits. A per-user mean (conversion rate: c_u ∈ {0, 1}; revenue
    per user: c_u = the user's revenue) is the special case n_u = 1 (:meth:`per_user_mean`), where the delta method
    reduces to the plain CLT on users: Var = s² / K. The estimators (``frequentist.ctr_estimate``,
    ``stratified_ctr``, ``periods``) read only the six fields and take either class.
    """

    n_users: int
    sum_n: float
    sum_c: float
    sum_nn: float
    sum_cc: float
    sum_nc: float

    def __post_init__(self) -> None:
        values = (self.n_users, self.sum_n, self.sum_c, self.sum_nn, self.sum_cc, self.sum_nc)
        for value in values:
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise ValueError(f"sums must be numbers, got {value!r}")
            if not math.isfinite(float(value)) or value < 0:
                raise ValueError(f"sums must be finite and >= 0, got {value!r}")
        if float(self.n_users) != int(self.n_users):
            raise ValueError(f"n_users must be an integer, got {self.n_users!r}")
        if self.n_users == 0 and any(v != 0 for v in values):
            raise ValueError("a summary with n_users=0 must have all sums equal to 0")
        if not _moments_possible(self, cross=True):
            raise ValueError("second moments too small for the first moments (Cauchy-Schwarz)")

    @classmethod
    def empty(cls) -> RatioSummary:
        return cls(0, 0, 0, 0, 0, 0)

    @classmethod
    def per_user_mean(cls, *, n_users: int, total: float, total_sq: float) -> RatioSummary:
        """Mean of a per-user value over ``n_users`` users from Σx and Σx² (n_u = 1 for every user)."""
        return cls(int(n_users), float(n_users), float(total), float(n_users), float(total_sq), float(total))

    @classmethod
    def from_users(cls, denominators: ArrayLike, numerators: ArrayLike) -> RatioSummary:
        n = np.asarray(denominators, dtype=float)
        c = np.asarray(numerators, dtype=float)
        if n.shape != c.shape or n.ndim != 1:
            raise ValueError("denominators and numerators must be 1-D arrays of equal length")
        return cls(int(n.size), float(n.sum()), float(c.sum()), float((n * n).sum()), float((c * c).sum()),
                   float((n * c).sum()))

    def __add__(self, other: RatioSummary) -> RatioSummary:
        """Union of two disjoint sets of users."""
        if not isinstance(other, RatioSummary):
            return NotImplemented
        return RatioSummary(self.n_users + other.n_users, self.sum_n + other.sum_n, self.sum_c + other.sum_c,
                            self.sum_nn + other.sum_nn, self.sum_cc + other.sum_cc, self.sum_nc + other.sum_nc)


def user_update_delta(*, n_before: int, c_before: int, n_after: int, c_after: int) -> dict[str, int]:
    """Increments to apply to a stored summary when one user's totals change.

    Lets the database keep the six sums as live counters: when a user goes from
    (n, c) to (n', c'), each sum moves by the difference of that user's terms.
    ``experiments.services.stats_tick.rollup_fold`` applies the same deltas, vectorised.
    ``n_before == 0`` means the user is new to the arm (``n_users`` += 1).
    """
    if min(n_before, c_before, n_after, c_after) < 0 or c_before > n_before or c_after > n_after:
        raise ValueError("counts must satisfy 0 <= clicks <= impressions")
    return {
        "n_users": int(n_before == 0 and n_after > 0),
        "sum_n": n_after - n_before,
        "sum_c": c_after - c_before,
        "sum_nn": n_after * n_after - n_before * n_before,
        "sum_cc": c_after * c_after - c_before * c_before,
        "sum_nc": n_after * c_after - n_before * c_before,
    }


@dataclass(frozen=True, slots=True)
class AllocationPeriod:
    """An interval during which the configured traffic weights were constant.

    ``arms`` holds, per arm, the clustered summary of the impressions served in
    this period (a user is a cluster of *their impressions in this period*).
    ``assigned`` optionally holds, per arm, the number of assignment units
    (users) first assigned during this period; it is what the sample-ratio
    check compares with ``weights``. Returning users keep their old arm, so
    counting every user seen in the period would compare old assignments with
    new weights. When omitted, ``n_users`` of ``arms`` is used instead.
    """

    weights: Mapping[str, float]
    arms: Mapping[str, ClusteredRatioSummary | RatioSummary]
    assigned: Mapping[str, int] | None = None
    label: str = ""

    def __post_init__(self) -> None:
        for name, w in self.weights.items():
            if not math.isfinite(float(w)) or w < 0:
                raise ValueError(f"weight of {name!r} must be finite and >= 0, got {w!r}")
        if sum(self.weights.values()) <= 0:
            raise ValueError("period weights must not all be zero")
        for name, summary in self.arms.items():
            if not isinstance(summary, (ClusteredRatioSummary, RatioSummary)):
                raise ValueError(f"period summary of {name!r} must be a ClusteredRatioSummary or RatioSummary")
        for name, count in (self.assigned or {}).items():
            if count < 0:
                raise ValueError(f"assigned count of {name!r} must be >= 0, got {count!r}")


# What the estimators accept: both classes carry the same six sums.
AnyRatioSummary = ClusteredRatioSummary | RatioSummary
