"""Fixed-horizon inference for a clustered CTR: delta-method variances,
intervals, lift and the two-sided z-test.

The core functions take NumPy arrays and broadcast, so simulations can run
thousands of experiments at once through the very code the dashboard uses;
the dataclass wrappers give the scalar API.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats as sps

from experiments.stats.summaries import AnyRatioSummary, ClusteredRatioSummary

FloatArray = NDArray[np.float64]


def ratio_moments(
    n_users: ArrayLike,
    sum_n: ArrayLike,
    sum_c: ArrayLike,
    sum_nn: ArrayLike,
    sum_cc: ArrayLike,
    sum_nc: ArrayLike,
) -> tuple[FloatArray, FloatArray]:
    """Ratio estimate R = Σc/Σn and its delta-method variance over user clusters.

    Var(R) ≈ (var_c − 2R·cov_nc + R²·var_n) / (K·mean_n²) with K users and
    sample (co)variances. The bracket equals Σ_u (c_u − R·n_u)² / (K − 1)
    because Σ_u (c_u − R·n_u) = 0; computing it that way from the raw sums
    avoids subtracting large nearly-equal numbers twice. Undefined (NaN) when
    there are no impressions or fewer than two users.
    """
    k = np.asarray(n_users, dtype=float)
    n, c = np.asarray(sum_n, dtype=float), np.asarray(sum_c, dtype=float)
    nn, cc, nc = (np.asarray(x, dtype=float) for x in (sum_nn, sum_cc, sum_nc))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(n > 0, c / n, np.nan)
        resid_ss = np.maximum(cc - 2.0 * ratio * nc + ratio * ratio * nn, 0.0)
        variance = np.where((k >= 2) & (n > 0), k * resid_ss / ((k - 1.0) * n * n), np.nan)
    return ratio, variance


def binomial_variance(sum_n: ArrayLike, sum_c: ArrayLike) -> FloatArray:
    """Naive variance R(1−R)/N that treats every impression as independent."""
    n, c = np.asarray(sum_n, dtype=float), np.asarray(sum_c, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(n > 0, c / n, np.nan)
        return np.where(n > 0, r * (1.0 - r) / n, np.nan)


def relative_lift_moments(
    treat: ArrayLike, treat_var: ArrayLike, control: ArrayLike, control_var: ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Relative lift T/C − 1 and its delta-method variance for independent T, C.

    Var(T/C) ≈ Var(T)/C² + T²·Var(C)/C⁴ (first-order Taylor expansion; the
    arms have disjoint users so Cov(T, C) = 0).
    """
    t, vt = np.asarray(treat, dtype=float), np.asarray(treat_var, dtype=float)
    c, vc = np.asarray(control, dtype=float), np.asarray(control_var, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        lift = np.where(c > 0, t / c - 1.0, np.nan)
        var = np.where(c > 0, vt / (c * c) + t * t * vc / (c**4), np.nan)
    return lift, var


def two_sided_p(estimate: ArrayLike, variance: ArrayLike) -> FloatArray:
    """Two-sided p-value of H0: parameter = 0 for an asymptotically normal estimate."""
    est, var = np.asarray(estimate, dtype=float), np.asarray(variance, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.abs(est) / np.sqrt(var)
        # A zero variance with a non-zero estimate is infinitely significant;
        # 0/0 stays NaN (no information).
        z = np.where((var == 0) & (est != 0), np.inf, z)
        return 2.0 * sps.norm.sf(z)


@functools.lru_cache(maxsize=32)
def z_quantile(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return float(sps.norm.ppf(0.5 + confidence / 2.0))


def wilson_interval(p: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``p`` observed over ``n`` trials.

    ``n`` may be fractional (an effective sample size of importance weights).
    With no trials the interval is the whole of [0, 1].
    """
    if n <= 0:
        return (0.0, 1.0)
    z = z_quantile(confidence)
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(max(p * (1 - p), 0.0) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True, slots=True)
class Estimate:
    """An asymptotically normal point estimate with its variance."""

    value: float
    variance: float

    @property
    def se(self) -> float:
        return math.sqrt(self.variance) if self.variance >= 0 else math.nan

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        half = z_quantile(confidence) * self.se
        return (self.value - half, self.value + half)

    @property
    def defined(self) -> bool:
        return math.isfinite(self.value) and math.isfinite(self.variance)


def ctr_estimate(summary: AnyRatioSummary) -> Estimate:
    """CTR (or any :class:`~experiments.stats.summaries.RatioSummary` ratio) of one arm with its clustered
    (delta-method) variance.

    Same formula as :func:`ratio_moments`, in plain floats: a report calls this
    a few hundred times per tick and NumPy's per-call overhead on 0-d arrays
    would dominate.
    """
    k, n = float(summary.n_users), float(summary.sum_n)
    if n <= 0:
        return Estimate(math.nan, math.nan)
    r = summary.sum_c / n
    if k < 2:
        return Estimate(r, math.nan)
    resid_ss = max(summary.sum_cc - 2.0 * r * summary.sum_nc + r * r * summary.sum_nn, 0.0)
    return Estimate(r, k * resid_ss / ((k - 1.0) * n * n))


def design_effect(summary: ClusteredRatioSummary) -> float:
    """Clustered variance / naive binomial variance (1 = impressions independent)."""
    clustered = ctr_estimate(summary).variance
    n = float(summary.sum_n)
    naive = (summary.sum_c / n) * (1.0 - summary.sum_c / n) / n if n > 0 else math.nan
    return clustered / naive if naive > 0 and math.isfinite(clustered) else math.nan


def stratified_ctr(summaries: Sequence[AnyRatioSummary], weights: Sequence[float]) -> Estimate:
    """Standardised CTR Σ_p w_p·R_p over allocation periods p (weights renormalised).

    Every arm is standardised with the *same* period weights, so a time trend
    in CTR contributes equally to every arm and cancels in comparisons even
    when the traffic split changed between periods. Periods are disjoint in
    time, so the per-period estimates are treated as independent (see
    docs/statistics.md for what that ignores).
    """
    if len(summaries) != len(weights) or not summaries:
        raise ValueError("need one weight per period and at least one period")
    w = np.asarray(weights, dtype=float)
    if np.any(w < 0) or w.sum() <= 0:
        raise ValueError("period weights must be >= 0 and not all zero")
    per = [ctr_estimate(s) for s in summaries]
    value, variance = stratified_moments([e.value for e in per], [e.variance for e in per], w)
    return Estimate(float(value), float(variance))


def stratified_moments(ratios: ArrayLike, variances: ArrayLike, weights: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Σ_p w_p·R_p and Σ_p w_p²·V_p along the last axis, weights renormalised (periods of weight 0 are left out).

    The array form of :func:`stratified_ctr`, broadcasting over leading axes (simulations of many experiments).
    """
    r, v = np.asarray(ratios, dtype=float), np.asarray(variances, dtype=float)
    w = np.asarray(weights, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = w / w.sum(axis=-1, keepdims=True)
    live = w > 0
    return (np.where(live, w * r, 0.0).sum(axis=-1), np.where(live, w * w * v, 0.0).sum(axis=-1))


def difference(treat: Estimate, control: Estimate) -> Estimate:
    """Absolute difference of two independent estimates."""
    return Estimate(treat.value - control.value, treat.variance + control.variance)


def relative_lift(treat: Estimate, control: Estimate) -> Estimate:
    """Relative lift treat/control − 1 with its delta-method variance."""
    lift, var = relative_lift_moments(treat.value, treat.variance, control.value, control.variance)
    return Estimate(float(lift), float(var))


def fixed_horizon_p(estimate: Estimate) -> float:
    """Two-sided z-test p-value of H0: estimate = 0 (valid only if you look once)."""
    return float(two_sided_p(estimate.value, estimate.variance))


def sample_size_per_arm(
    *,
    baseline_ctr: float,
    relative_lift: float,
    alpha: float = 0.05,
    power: float = 0.8,
    design_effect: float = 1.0,
) -> int:
    """Impressions per arm for a two-sided z-test on the CTR difference.

    n = (z_{1−α/2} + z_{power})² · deff · (p₀(1−p₀) + p₁(1−p₁)) / (p₁ − p₀)²,
    with the design effect inflating the binomial variance for user clustering.
    """
    p0 = baseline_ctr
    p1 = baseline_ctr * (1.0 + relative_lift)
    if not (0 < p0 < 1 and 0 < p1 < 1) or relative_lift == 0:
        raise ValueError("need 0 < baseline, baseline·(1+lift) < 1 and a non-zero lift")
    z = sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power)
    n = z * z * design_effect * (p0 * (1 - p0) + p1 * (1 - p1)) / (p1 - p0) ** 2
    return int(math.ceil(n))
