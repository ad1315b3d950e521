"""CUPED for a ratio metric clustered by user (CTR = Σclicks / Σimpressions), from additive per-user sums.

Deng, Xu, Kohavi & Walker, "Improving the Sensitivity of Online Controlled Experiments by Utilizing
Pre-Experiment Data" (WSDM 2013), with the ratio-metric form GrowthBook and Statsig use: regression
adjustment on the delta method's linearisation. For user u with in-experiment impressions n_u and clicks
c_u, and the same user's impressions n0_u and clicks c0_u *before their first exposure* (0 and 0 for a new
user), in an arm of K users:

    ψ_u = (c_u − R·n_u) / n̄        R  = Σc / Σn,   n̄  = Σn / K      (the CTR's linearisation: R ≈ R* + mean ψ)
    φ_u = (c0_u − R0·n0_u) / n̄0    R0 = Σc0 / Σn0, n̄0 = Σn0 / K     (the same for the pre-exposure CTR)

θ = Cov(ψ, φ) / Var(φ), pooled within arms over all arms (one θ for the experiment, so the adjustment cannot
favour an arm), and each arm's estimate moves by what its users' past says about them:

    R_adj = R − θ·(R0 − R0_all),     Var(R_adj) = (Var ψ − 2θ·Cov(ψ, φ) + θ²·Var φ) / K

with R0_all the pre-exposure CTR of all arms together. Randomisation makes E[R0 − R0_all] = 0, so R_adj is
consistent for the same CTR as R; its variance is smaller by ρ(ψ, φ)² at the arm's own optimum. Every
(co)variance comes from fifteen sums over users, all additive (:class:`CupedSums`), so the rollups can keep
them. The functions take arrays with the arms on the first axis and any further axes (simulated experiments,
looks) after, as the Monte Carlo tests use them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import astuple, dataclass, fields

import numpy as np
from numpy.typing import ArrayLike, NDArray

from experiments.stats.frequentist import Estimate, relative_lift

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class CupedSums:
    """One arm's sums over its users: in-experiment (n, c), pre-exposure (n0, c0) and their cross products."""

    n_users: float
    sum_n: float
    sum_c: float
    sum_nn: float
    sum_cc: float
    sum_nc: float
    sum_n0: float
    sum_c0: float
    sum_n0n0: float
    sum_c0c0: float
    sum_n0c0: float
    sum_nn0: float
    sum_nc0: float
    sum_cn0: float
    sum_cc0: float

    @classmethod
    def of_users(cls, n: ArrayLike, c: ArrayLike, n0: ArrayLike, c0: ArrayLike) -> CupedSums:
        n, c, n0, c0 = (np.asarray(x, dtype=float) for x in (n, c, n0, c0))
        if not (n.shape == c.shape == n0.shape == c0.shape) or n.ndim != 1:
            raise ValueError("n, c, n0 and c0 must be 1-D arrays of one length (one entry per user)")
        if (c > n).any() or (c0 > n0).any() or (np.minimum.reduce([n, c, n0, c0]) < 0).any():
            raise ValueError("clicks must be between 0 and the impressions, for every user and period")
        return cls(float(len(n)), n.sum(), c.sum(), (n * n).sum(), (c * c).sum(), (n * c).sum(),
                   n0.sum(), c0.sum(), (n0 * n0).sum(), (c0 * c0).sum(), (n0 * c0).sum(),
                   (n * n0).sum(), (n * c0).sum(), (c * n0).sum(), (c * c0).sum())

    def as_args(self) -> tuple[float, ...]:
        return astuple(self)


FIELDS = tuple(f.name for f in fields(CupedSums))


@dataclass(frozen=True)
class CupedMoments:
    """Per arm (first axis): the raw and the adjusted CTR with their variances; θ and R0_all are shared."""

    ratio: FloatArray
    variance: FloatArray
    adjusted: FloatArray
    adjusted_variance: FloatArray
    theta: FloatArray  # without the arm axis
    pre_ratio_all: FloatArray  # without the arm axis

    @property
    def variance_reduction(self) -> FloatArray:
        """1 − Var(R_adj) / Var(R), per arm (the share of the variance the covariate explained)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return 1.0 - self.adjusted_variance / self.variance


def cuped_moments(*sums: ArrayLike) -> CupedMoments:
    """The fifteen sums of :class:`CupedSums`, in its field order, each shaped ``[arms, ...]`` (see module doc).

    Undefined (NaN) for an arm with no impressions or fewer than two users; no adjustment (θ = 0) when no arm's
    users have any pre-exposure impressions.
    """
    if len(sums) != len(FIELDS):
        raise ValueError(f"expected the {len(FIELDS)} sums {FIELDS}, got {len(sums)}")
    (k, n, c, nn, cc, nc, n0, c0, n0n0, c0c0, n0c0, nn0, nc0, cn0, cc0) = (np.asarray(x, dtype=float) for x in sums)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(n > 0, c / n, np.nan)
        r0 = np.where(n0 > 0, c0 / n0, 0.0)
        nbar, n0bar = n / k, n0 / k
        e2 = np.maximum(cc - 2.0 * r * nc + r * r * nn, 0.0)  # Σ(c − R n)²
        f2 = np.maximum(c0c0 - 2.0 * r0 * n0c0 + r0 * r0 * n0n0, 0.0)  # Σ(c0 − R0 n0)²
        ef = cc0 - r0 * cn0 - r * nc0 + r * r0 * nn0  # Σ(c − R n)(c0 − R0 n0)
        has_pre = n0 > 0
        # Pooled within-arm regression of ψ on φ: Σ_arms Σψφ / Σ_arms Σφ² (the (K − 1) factors cancel).
        sxy = np.where(has_pre, ef / (nbar * n0bar), 0.0)
        sxx = np.where(has_pre, f2 / (n0bar * n0bar), 0.0)
        sxx_all = np.nansum(sxx, axis=0)
        theta = np.where(sxx_all > 0, np.nansum(sxy, axis=0) / sxx_all, 0.0)
        n0_all = n0.sum(axis=0)
        r0_all = np.where(n0_all > 0, c0.sum(axis=0) / n0_all, 0.0)
        defined = (k >= 2) & (n > 0)
        dof = k - 1.0
        var_psi = e2 / (nbar * nbar * dof)
        var_phi = np.where(has_pre, f2 / (n0bar * n0bar * dof), 0.0)
        cov = np.where(has_pre, ef / (nbar * n0bar * dof), 0.0)
        variance = np.where(defined, var_psi / k, np.nan)
        adjusted = np.where(defined, r - np.where(has_pre, theta * (r0 - r0_all), 0.0), np.nan)
        adjusted_variance = np.where(defined, np.maximum(var_psi - 2.0 * theta * cov + theta * theta * var_phi, 0.0) / k,
                                     np.nan)
    return CupedMoments(r, variance, adjusted, adjusted_variance, theta, r0_all)


def cuped_section(sums: Mapping[str, CupedSums | None], *, control: str, confidence: float = 0.95
                  ) -> dict[str, dict[str, float | None] | None]:
    """Per arm: the CUPED-adjusted CTR with its interval (clipped to [0, 1]), the variance reduction achieved, θ and,
    against the control, the adjusted relative lift with its delta-method interval; None for an arm without sums
    (its users' covariates are incomplete) or with too little data. θ is pooled over the arms given.
    """
    names = [name for name, s in sums.items() if s is not None and s.n_users >= 2 and s.sum_n > 0]
    out: dict[str, dict[str, float | None] | None] = dict.fromkeys(sums)
    if not names:
        return out
    m = cuped_moments(*(np.array(col) for col in zip(*(sums[n].as_args() for n in names), strict=True)))
    estimates = {n: Estimate(float(m.adjusted[i]), float(m.adjusted_variance[i])) for i, n in enumerate(names)}
    for i, name in enumerate(names):
        est = estimates[name]
        lo, hi = est.interval(confidence) if est.defined else (math.nan, math.nan)
        row: dict[str, float | None] = {
            "value": _num(est.value), "ci_low": _num(max(lo, 0.0)), "ci_high": _num(min(hi, 1.0)),
            "variance_reduction": _num(float(m.variance_reduction[i])), "theta": _num(float(m.theta)),
            "unadjusted": _num(float(m.ratio[i])), "lift": None, "lift_ci_low": None, "lift_ci_high": None,
        }
        if name != control and control in estimates:
            lift = relative_lift(est, estimates[control])
            if lift.defined:
                row["lift"] = lift.value
                row["lift_ci_low"], row["lift_ci_high"] = lift.interval(confidence)
        out[name] = row
    return out


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None
