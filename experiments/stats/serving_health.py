"""Guardrail metrics of serving, per arm: latency p95, error rate and catalogue coverage, and their bounds.

Pure functions over what the web processes count (``experiments.serving.health``) so they are tested by hand:

* **latency** is counted in a log-spaced histogram: bucket ``i`` holds handler times in
  ``(edge(i - 1), edge(i)]`` ms with ``edge(i) = LATENCY_BASE_MS · LATENCY_RATIO**i``, so a quantile read off it
  is within one bucket (10 %) of the exact one. :func:`latency_quantile` returns the **upper** edge of the bucket
  that holds the quantile: never below the true value.
* the **breach rules** (:func:`breaches`) act only on evidence. Latency: the lower 99 % confidence bound of the
  p95 (the order statistic at rank ``n·0.95 − z·√(n·0.95·0.05)``, read at its bucket's lower edge) is above
  the bound. Error rate: the lower 99 % Wilson bound of the rate is above the bound. Both need
  ``min_requests`` requests in the window. Coverage (distinct items shown / active items) is below its bound
  after the arm showed at least ``COVERAGE_MIN_SHOWS`` × the active items (a uniform shuffle of the catalogue
  would by then have covered 1 − e⁻⁵ ≈ 99.3 % of it), so a young arm is not judged on too few slates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

LATENCY_BASE_MS = 0.25
LATENCY_RATIO = 1.1
LATENCY_BUCKETS = 124  # the last edge is 0.25 · 1.1**123 ≈ 30 s; slower requests count in the last bucket
Z_99 = 2.3263478740408408  # one-sided 99 %
COVERAGE_MIN_SHOWS = 5


def latency_edge(i: int) -> float:
    """Upper edge (ms) of bucket ``i``; bucket 0 holds everything up to ``LATENCY_BASE_MS``."""
    return LATENCY_BASE_MS * LATENCY_RATIO ** i


_LOG_BASE = math.log(LATENCY_BASE_MS)
_LOG_RATIO = math.log(LATENCY_RATIO)


def latency_bucket(ms: float) -> int:
    """The bucket of a handler time in ms (see module doc); on every request's path, so kept lean."""
    if not ms > LATENCY_BASE_MS:  # NaN and negatives too: the fastest bucket
        return 0
    i = math.ceil((math.log(ms) - _LOG_BASE) / _LOG_RATIO - 1e-9)
    return i if i < LATENCY_BUCKETS else LATENCY_BUCKETS - 1


def _value_at_rank(counts: Mapping[int, int], rank: int) -> int:
    """The bucket holding the ``rank``-th smallest value (1-based)."""
    seen = 0
    for i in sorted(counts):
        seen += counts[i]
        if seen >= rank:
            return i
    return max(counts)


def latency_quantile(counts: Mapping[int, int], q: float) -> float | None:
    """The q-quantile (ms) of a histogram ``{bucket: count}``: the upper edge of its bucket; None when empty."""
    counts = {int(i): int(c) for i, c in counts.items() if c > 0}
    n = sum(counts.values())
    if n == 0:
        return None
    return latency_edge(_value_at_rank(counts, max(1, math.ceil(q * n))))


def latency_quantile_lower(counts: Mapping[int, int], q: float, z: float = Z_99) -> float | None:
    """A lower confidence bound (ms) of the q-quantile: the order statistic at rank ``n·q − z·√(n·q·(1−q))``
    (normal approximation of the binomial count below the quantile), read at its bucket's lower edge."""
    counts = {int(i): int(c) for i, c in counts.items() if c > 0}
    n = sum(counts.values())
    if n == 0:
        return None
    rank = math.floor(n * q - z * math.sqrt(n * q * (1 - q)))
    if rank < 1:
        return 0.0
    i = _value_at_rank(counts, rank)
    return 0.0 if i == 0 else latency_edge(i - 1)


def wilson_lower(errors: int, n: int, z: float = Z_99) -> float:
    """Lower Wilson score bound of a rate ``errors / n`` (0 when n = 0)."""
    if n <= 0:
        return 0.0
    p = errors / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - margin) / (1 + z * z / n))


@dataclass(frozen=True)
class Bounds:
    """An experiment's guardrail bounds; None switches a rule off."""

    latency_p95_ms: float | None = None
    error_rate: float | None = 0.05
    min_coverage: float | None = None
    min_requests: int = 200

    def as_dict(self) -> dict[str, Any]:
        return {"latency_p95_ms": self.latency_p95_ms, "error_rate": self.error_rate,
                "min_coverage": self.min_coverage, "min_requests": self.min_requests}

    @classmethod
    def from_dict(cls, given: Any) -> Bounds:
        """Bounds from a settings object (a missing key keeps its default; null switches a rule off);
        :class:`BoundsError` names the first invalid field."""
        if not isinstance(given, Mapping):
            raise BoundsError("guardrail_bounds", "guardrail_bounds is an object of bounds")
        defaults = cls().as_dict()
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            raise BoundsError(str(unknown[0]), f"unknown guardrail bound(s) {unknown}; known: {sorted(defaults)}")
        values = {**defaults, **given}
        checks = {
            "latency_p95_ms": (lambda x: 0 < x <= 600_000, "latency_p95_ms is a positive number of ms, or null"),
            "error_rate": (lambda x: 0 < x < 1, "error_rate is a share between 0 and 1, or null"),
            "min_coverage": (lambda x: 0 < x <= 1, "min_coverage is a share above 0 and at most 1, or null"),
        }
        for name, (ok, message) in checks.items():
            value = values[name]
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or not ok(value)):
                raise BoundsError(name, message)
        n = values["min_requests"]
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 10_000_000:
            raise BoundsError("min_requests", "min_requests is a whole number from 1 to 10,000,000")
        return cls(**{name: None if values[name] is None else float(values[name]) for name in checks},
                   min_requests=n)


class BoundsError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ArmHealth:
    """What one arm's serving did in the window: requests (answered or failed after the arm was chosen), the 5xx
    among them that were the arm's doing, the handler-time histogram, items shown and how many were distinct."""

    requests: int
    errors: int
    latency: Mapping[int, int]
    shown: int
    distinct_items: int
    active_items: int

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def coverage(self) -> float | None:
        return min(1.0, self.distinct_items / self.active_items) if self.active_items and self.shown else None

    def as_dict(self) -> dict[str, Any]:
        p95 = latency_quantile(self.latency, 0.95)
        return {
            "requests": self.requests, "errors": self.errors, "error_rate": self.error_rate,
            "latency_p50_ms": latency_quantile(self.latency, 0.5), "latency_p95_ms": p95,
            "latency_p95_ms_lower": latency_quantile_lower(self.latency, 0.95),
            "error_rate_lower": wilson_lower(self.errors, self.requests) if self.requests else None,
            "shown": self.shown, "distinct_items": self.distinct_items, "active_items": self.active_items,
            "coverage": self.coverage,
        }


@dataclass(frozen=True)
class Breach:
    rule: str
    message: str
    evidence: dict[str, Any]


def breaches(health: ArmHealth, bounds: Bounds) -> list[Breach]:
    """The bounds this arm breaches, on evidence (see module doc); empty when healthy or too little data."""
    out: list[Breach] = []
    facts = health.as_dict()
    enough = health.requests >= bounds.min_requests
    if bounds.latency_p95_ms is not None and enough:
        lower = facts["latency_p95_ms_lower"]
        if lower is not None and lower > bounds.latency_p95_ms:
            out.append(Breach(
                "latency_p95_above_bound",
                f"Serving latency p95 {facts['latency_p95_ms']:.1f} ms (99% lower bound {lower:.1f} ms) is above the "
                f"bound of {bounds.latency_p95_ms:g} ms over {health.requests} requests.",
                {"bound": bounds.latency_p95_ms, **facts}))
    if bounds.error_rate is not None and enough:
        lower = facts["error_rate_lower"]
        if lower is not None and lower > bounds.error_rate:
            out.append(Breach(
                "error_rate_above_bound",
                f"Error rate {health.error_rate:.1%} ({health.errors} of {health.requests} requests; 99% lower bound "
                f"{lower:.1%}) is above the bound of {bounds.error_rate:.1%}.",
                {"bound": bounds.error_rate, **facts}))
    coverage = health.coverage
    if (bounds.min_coverage is not None and coverage is not None
            and health.shown >= COVERAGE_MIN_SHOWS * health.active_items and coverage < bounds.min_coverage):
        out.append(Breach(
            "coverage_below_bound",
            f"Catalogue coverage {coverage:.1%} ({health.distinct_items} of {health.active_items} active items in "
            f"{health.shown} shown) is below the bound of {bounds.min_coverage:.1%}.",
            {"bound": bounds.min_coverage, **facts}))
    return out
