"""Always-valid inference for a live dashboard: the normal-mixture mSPRT.

Johari, Koomen, Pekelis & Walsh, "Peeking at A/B Tests" (KDD 2017) /
"Always Valid Inference" (Operations Research 2022). For an asymptotically
normal estimate θ̂ with variance V of an effect θ (H0: θ = 0), mixing the
likelihood ratio over θ ~ N(0, τ²) gives

    Λ = sqrt(V / (V + τ²)) · exp(τ²·θ̂² / (2·V·(V + τ²))),

a non-negative martingale under H0 (exactly for Gaussian increments,
asymptotically otherwise). By Ville's inequality P(sup_t Λ_t ≥ 1/α) ≤ α, so
1/Λ_t at the current look is a p-value that stays valid however often one
looks and whenever one stops: acting the first time it falls below α, or at any
look one chooses to act on, is wrong with probability at most α.

Inverting "Λ < 1/α" gives the confidence sequence
θ̂ ± sqrt(V(V+τ²)/τ² · (2·log(1/α) + log((V+τ²)/V))): 0 is outside it exactly
when 1/Λ < α.

**The current look, not a running minimum or intersection.** Johari et al. also
offer the running minimum of 1/Λ and the running intersection of the intervals;
both assume one fixed effect. Here the arms learn, so the lift the test measures
(over the experiment so far) moves, and the running versions keep an early
excursion for ever: in a live demo (docs/benchmarks.md, "The demo at 3.2 and at
1.6") the intersection of a learning arm's intervals came out as [+22.6%, −0.6%],
empty, and another's was narrower than the fixed-horizon interval and beside it,
while a running-minimum p of 0.044 called a lift of +0.3% (fixed 95% interval
[−3.2%, +3.8%]) significant. The current look's p and interval are valid in the
same sense (the event "some look rejects a true effect" is the same event for
both), agree with each other at every look, and follow the arms as they learn.
The state between ticks keeps the last defined look, for looks without data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

# The mixture is put on the *relative* lift so that τ is unit-free: τ = 0.1
# says "lifts of about ±10% are plausible", which is where recommender tests
# live. The test has most power for effects near τ and stays valid for any τ.
DEFAULT_TAU = 0.1

# Below these counts per arm the clustered variance is itself too noisy (an arm
# with no clicks has variance 0, a handful of users gives an erratic one) and a
# single lucky look would make Λ huge. Looks start only once both arms have
# this much data. Without this gate the A/A simulation in
# tests/experiments/stats/test_simulation.py rejects ~7% instead of < 5%.
MIN_CLICKS = 10
MIN_USERS = 100


def enough_data(clicks: ArrayLike, users: ArrayLike) -> NDArray[np.bool_]:
    """Whether an arm has enough data for its variance to be trusted by the sequential test."""
    return (np.asarray(clicks) >= MIN_CLICKS) & (np.asarray(users) >= MIN_USERS)


def msprt_log_lambda(estimate: ArrayLike, variance: ArrayLike, tau: float) -> NDArray[np.float64]:
    """log Λ of the normal-mixture SPRT (NaN where the variance is not positive)."""
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau!r}")
    est, var = np.asarray(estimate, dtype=float), np.asarray(variance, dtype=float)
    t2 = tau * tau
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 0.5 * np.log(var / (var + t2)) + t2 * est * est / (2.0 * var * (var + t2))
        return np.where(var > 0, out, np.nan)


def msprt_p(estimate: ArrayLike, variance: ArrayLike, tau: float) -> NDArray[np.float64]:
    """1/Λ at this look alone, capped at 1 (NaN where undefined)."""
    log_lam = msprt_log_lambda(estimate, variance, tau)
    with np.errstate(over="ignore"):
        return np.where(np.isnan(log_lam), np.nan, np.minimum(1.0, np.exp(-log_lam)))


def always_valid_p_update(
    previous_p: ArrayLike, estimate: ArrayLike, variance: ArrayLike, tau: float
) -> NDArray[np.float64]:
    """min(previous, 1/Λ now); an undefined look keeps the previous.

    The running minimum: below α exactly when some look so far rejected, which is what a simulation of
    "act at the first look below α" counts (tests/experiments/stats/simulate.py). The dashboard shows the
    current look (:func:`msprt_update`; module doc).
    """
    prev = np.asarray(previous_p, dtype=float)
    now = msprt_p(estimate, variance, tau)
    return np.where(np.isnan(now), prev, np.minimum(prev, now))


def confidence_sequence_halfwidth(variance: ArrayLike, tau: float, alpha: float) -> NDArray[np.float64]:
    """Half-width of the (1−α) mSPRT confidence sequence at one look."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    var = np.asarray(variance, dtype=float)
    t2 = tau * tau
    with np.errstate(divide="ignore", invalid="ignore"):
        hw = np.sqrt(var * (var + t2) / t2 * (2.0 * math.log(1.0 / alpha) + np.log((var + t2) / var)))
        return np.where(var > 0, hw, np.nan)


@dataclass(frozen=True, slots=True)
class SequentialState:
    """What must survive between dashboard ticks for one comparison.

    ``always_valid_p`` is 1/Λ at the last defined look; ``cs_lower``/``cs_upper``
    that look's confidence sequence (None = unbounded, before any look);
    ``looks`` counts the ticks that updated them. Store ``to_dict()`` and
    pass it back as ``from_dict(...)`` on the next tick: a look without enough
    data keeps it.
    """

    always_valid_p: float = 1.0
    cs_lower: float | None = None
    cs_upper: float | None = None
    looks: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.always_valid_p <= 1.0:
            raise ValueError(f"always_valid_p must be in [0, 1], got {self.always_valid_p!r}")
        if self.looks < 0:
            raise ValueError("looks must be >= 0")

    @classmethod
    def from_dict(cls, data: Mapping[str, object] | None) -> SequentialState:
        if not data:
            return cls()
        return cls(
            always_valid_p=float(data.get("always_valid_p", 1.0)),  # type: ignore[arg-type]
            cs_lower=None if data.get("cs_lower") is None else float(data["cs_lower"]),  # type: ignore[arg-type]
            cs_upper=None if data.get("cs_upper") is None else float(data["cs_upper"]),  # type: ignore[arg-type]
            looks=int(data.get("looks", 0)),  # type: ignore[call-overload]
        )

    def to_dict(self) -> dict[str, float | int | None]:
        return {
            "always_valid_p": self.always_valid_p,
            "cs_lower": self.cs_lower,
            "cs_upper": self.cs_upper,
            "looks": self.looks,
        }


def msprt_update(
    previous: SequentialState | None,
    *,
    estimate: float,
    variance: float,
    tau: float = DEFAULT_TAU,
    alpha: float = 0.05,
) -> SequentialState:
    """One look: the current estimate's always-valid p and confidence sequence (module doc).

    A look with an undefined or zero variance (too little data) leaves the
    state untouched rather than trusting a degenerate variance.
    """
    prev = previous or SequentialState()
    if not (math.isfinite(estimate) and math.isfinite(variance) and variance > 0):
        return prev
    p_new = float(msprt_p(estimate, variance, tau))
    hw = float(confidence_sequence_halfwidth(variance, tau, alpha))
    return SequentialState(always_valid_p=p_new, cs_lower=estimate - hw, cs_upper=estimate + hw, looks=prev.looks + 1)
