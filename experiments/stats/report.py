"""One entry point for the dashboard: per-arm summaries in, JSON-ready dict out.

See docs/statistics.md for every number, its formula and its assumptions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from experiments.stats.bayes import DEFAULT_DRAWS, p_best_expected_loss
from experiments.stats.frequentist import (
    Estimate,
    ctr_estimate,
    design_effect,
    difference,
    fixed_horizon_p,
    relative_lift,
)
from experiments.stats.multiple import holm_adjust
from experiments.stats.periods import competitors, pairwise
from experiments.stats.sequential import (
    DEFAULT_TAU,
    MIN_CLICKS,
    MIN_USERS,
    SequentialState,
    enough_data,
    msprt_update,
)
from experiments.stats.srm import (
    SRM_MIN_IMPRESSIONS,
    SRM_P_THRESHOLD,
    srm_across_periods,
    srm_test,
)
from experiments.stats.summaries import AllocationPeriod, ClusteredRatioSummary

SCHEMA_VERSION = 1
# Per-arm keys that only a non-control arm has (None on the control row).
_COMPARISON_KEYS = (
    "periods_used",
    "abs_diff",
    "abs_diff_ci",
    "lift",
    "lift_ci",
    "p_value",
    "p_value_holm",
    "always_valid_p",
    "always_valid_p_holm",
    "lift_cs",
)


def _clean(value: Any) -> Any:
    """Make a value JSON-safe: NumPy scalars → Python, NaN/±inf → None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    return value


def _interval(est: Estimate, confidence: float, lo: float = -math.inf, hi: float = math.inf) -> list[float] | None:
    if not est.defined:
        return None
    a, b = est.interval(confidence)
    return [max(a, lo), min(b, hi)]


def _count(value: float) -> int | float:
    """Counts arrive as floats from SQL sums; show whole numbers as integers."""
    return int(value) if float(value).is_integer() else float(value)


def _warn(warnings: list[dict[str, Any]], code: str, message: str, arm: str | None = None) -> None:
    warnings.append({"code": code, "arm": arm, "message": message})


def _check_period_totals(
    arms: Mapping[str, ClusteredRatioSummary],
    periods: Sequence[AllocationPeriod] | None,
    warnings: list[dict[str, Any]],
) -> None:
    for name, summary in arms.items():
        if not periods:
            return
        in_periods = sum(p.arms[name].sum_n for p in periods if name in p.arms)
        if not math.isclose(in_periods, summary.sum_n, rel_tol=0.01, abs_tol=10):
            _warn(
                warnings,
                "period_totals_mismatch",
                f"Impressions over periods ({in_periods:g}) differ from the arm total ({summary.sum_n:g}); "
                "the two were probably read at different moments.",
                name,
            )


def _srm(
    arms: Mapping[str, ClusteredRatioSummary],
    weights: Mapping[str, float],
    periods: Sequence[AllocationPeriod] | None,
) -> dict[str, Any]:
    if not periods:
        result = srm_test(
            {name: s.n_users for name, s in arms.items()},
            weights,
            impressions=sum(s.sum_n for s in arms.values()),
        )
        return {**result.to_dict(), "unit": "users", "periods": []}
    per = []
    for p in periods:
        counts = dict(p.assigned) if p.assigned is not None else {n: s.n_users for n, s in p.arms.items()}
        per.append(srm_test(counts, p.weights, impressions=sum(s.sum_n for s in p.arms.values())))
    p_adj, alert = srm_across_periods(per)
    return {
        "p_value": p_adj,
        "alert": alert,
        "unit": "users",
        "periods": [
            {"index": i, "label": p.label, **r.to_dict()} for i, (p, r) in enumerate(zip(periods, per, strict=True))
        ],
    }


def experiment_report(
    arms: Mapping[str, ClusteredRatioSummary],
    *,
    control: str,
    weights: Mapping[str, float],
    periods: Sequence[AllocationPeriod] | None = None,
    sequential_state: Mapping[str, Any] | None = None,
    seed: int = 0,
    alpha: float = 0.05,
    tau: float = DEFAULT_TAU,
    draws: int = DEFAULT_DRAWS,
    at: str | float | None = None,
) -> dict[str, Any]:
    """All dashboard statistics of one experiment at one tick.

    ``arms``: per-arm summaries over the whole experiment (a user = all their
    impressions). ``weights``: the configured split now. ``periods``: optional
    per-allocation-period summaries (constant weights within each) — give them
    whenever weights ever changed. ``sequential_state``: the
    ``"sequential_state"`` of the previous tick's report (None on the first).
    ``seed``: seeds the P(best) Monte Carlo (same inputs + seed = same output).
    ``at``: echoed as the snapshot's timestamp for the charts.

    Returns a dict that ``json.dumps(..., allow_nan=False)`` accepts (undefined
    numbers are None); keys are listed in docs/statistics.md §11.
    """
    if not arms:
        raise ValueError("need at least one arm")
    if control not in arms:
        raise ValueError(f"control arm {control!r} is not among the arms {sorted(arms)}")
    for name, s in arms.items():
        if not isinstance(s, ClusteredRatioSummary):
            raise ValueError(f"summary of {name!r} must be a ClusteredRatioSummary")
    if any(float(w) < 0 or not math.isfinite(float(w)) for w in weights.values()):
        raise ValueError("weights must be finite and >= 0")
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    confidence = 1.0 - alpha
    warnings: list[dict[str, Any]] = []
    total_w = sum(float(weights.get(n, 0.0)) for n in arms) or math.nan
    total_users = sum(s.n_users for s in arms.values()) or math.nan

    _check_period_totals(arms, periods, warnings)
    ranking = competitors(arms, periods)

    prev = dict(sequential_state or {})
    if prev and (prev.get("control") != control or prev.get("tau") != tau or prev.get("alpha") != alpha):
        _warn(warnings, "sequential_reset", "Control, tau or alpha changed: the always-valid p-values restart.")
        prev = {}
    prev_arms: Mapping[str, Any] = prev.get("arms", {})

    out: dict[str, dict[str, Any]] = {}
    new_state: dict[str, Any] = {}
    p_fixed: dict[str, float | None] = {}
    p_seq: dict[str, float | None] = {}
    control_ready = bool(enough_data(arms[control].sum_c, arms[control].n_users))
    for name, s in arms.items():
        pooled = ctr_estimate(s)
        adjusted = ranking.estimates.get(name)
        out[name] = row = {
            "arm": name,
            "is_control": name == control,
            "weight": float(weights.get(name, 0.0)) / total_w,
            "users": s.n_users,
            "user_share": s.n_users / total_users,
            "impressions": _count(s.sum_n),
            "clicks": _count(s.sum_c),
            "ctr": pooled.value,
            "ctr_se": pooled.se,
            "ctr_ci": _interval(pooled, confidence, 0.0, 1.0),
            "design_effect": design_effect(s),
            "ctr_adjusted": None if adjusted is None else adjusted.value,
            "ctr_adjusted_ci": None if adjusted is None else _interval(adjusted, confidence, 0.0, 1.0),
            **dict.fromkeys(_COMPARISON_KEYS),
            "significant": False,
            "significant_sequential": False,
            "p_best": None,
            "expected_loss": None,
        }
        ready = bool(enough_data(s.sum_c, s.n_users))
        if not ready:
            _warn(
                warnings,
                "few_data",
                f"Fewer than {MIN_CLICKS} clicks or {MIN_USERS} users: intervals are rough and the "
                "sequential test waits.",
                name,
            )
        if name == control:
            continue
        comp = pairwise(arms, periods, treat=name, control=control)
        if periods and len(periods) >= 2 and not comp.stratified:
            _warn(
                warnings,
                "no_common_period",
                "No allocation period served both this arm and the control: the comparison uses pooled "
                "totals and may be confounded by time trends.",
                name,
            )
        diff = difference(comp.treat, comp.control)
        lift = relative_lift(comp.treat, comp.control)
        state = SequentialState.from_dict(prev_arms.get(name))
        if ready and control_ready:
            state = msprt_update(state, estimate=lift.value, variance=lift.variance, tau=tau, alpha=alpha)
        new_state[name] = state.to_dict()
        p_fixed[name] = fixed_horizon_p(diff) if diff.defined else None
        p_seq[name] = state.always_valid_p
        row.update(
            {
                "periods_used": comp.periods_used,
                "abs_diff": diff.value,
                "abs_diff_ci": _interval(diff, confidence),
                "lift": lift.value,
                "lift_ci": _interval(lift, confidence),
                "p_value": p_fixed[name],
                "always_valid_p": state.always_valid_p,
                "lift_cs": [state.cs_lower, state.cs_upper],
            }
        )

    holm_fixed = holm_adjust(p_fixed)
    holm_seq = holm_adjust(p_seq)
    for name in p_fixed:
        row = out[name]
        row["p_value_holm"] = holm_fixed[name]
        row["always_valid_p_holm"] = holm_seq[name]
        row["significant"] = holm_fixed[name] is not None and holm_fixed[name] < alpha
        row["significant_sequential"] = holm_seq[name] is not None and holm_seq[name] < alpha

    racing = list(ranking.estimates)
    if racing:
        pb, loss = p_best_expected_loss(
            [ranking.estimates[n].value for n in racing],
            [ranking.estimates[n].variance for n in racing],
            seed=seed,
            draws=draws,
        )
        for n, p, el in zip(racing, pb, loss, strict=True):
            out[n]["p_best"] = float(p)
            out[n]["expected_loss"] = float(el)
    for name in arms:
        if name not in ranking.estimates:
            _warn(
                warnings,
                "not_ranked",
                "Left out of P(best): fewer than two users, or no traffic in the latest traffic split.",
                name,
            )

    srm = _srm(arms, weights, periods)
    if srm["alert"]:
        _warn(
            warnings,
            "srm",
            f"Sample-ratio mismatch (p = {srm['p_value']:.2g} < {SRM_P_THRESHOLD}): assignment or logging "
            "is broken; do not trust the comparisons.",
        )

    report = {
        "schema_version": SCHEMA_VERSION,
        "at": at,
        "control": control,
        "alpha": alpha,
        "arm_order": list(arms),
        "arms": out,
        "srm": srm,
        "srm_threshold": SRM_P_THRESHOLD,
        "srm_min_impressions": SRM_MIN_IMPRESSIONS,
        "comparison": {
            "method": "stratified" if ranking.stratified else "pooled",
            "periods": len(periods or []),
            "ranking_periods_used": ranking.periods_used,
            "tau": tau,
            "sequential_scale": "relative_lift",
        },
        "bayes": {"method": "normal_clustered", "draws": draws, "seed": seed},
        "sequential_state": {"control": control, "tau": tau, "alpha": alpha, "arms": new_state},
        "warnings": warnings,
    }
    return _clean(report)
