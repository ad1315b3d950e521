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
    stratified_ctr,
)
from experiments.stats.multiple import holm_adjust
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


def _interval(est: Estimate, confidence: float, lo: float = -math.inf, hi: float = math.inf) -> list[float]:
    if not est.defined:
        return [math.nan, math.nan]
    a, b = est.interval(confidence)
    return [max(a, lo), min(b, hi)]


def _comparison_estimates(
    arms: Mapping[str, ClusteredRatioSummary],
    periods: Sequence[AllocationPeriod] | None,
    warnings: list[dict[str, Any]],
) -> tuple[dict[str, Estimate], dict[str, Any]]:
    """Per-arm CTR estimates that are comparable across arms.

    With several allocation periods, each arm's CTR is standardised to the same
    period mix (periods weighted by their total impressions), using only the
    periods in which every arm had at least two users; otherwise the pooled
    estimate.
    """
    pooled = {name: ctr_estimate(s) for name, s in arms.items()}
    if not periods or len(periods) < 2:
        return pooled, {"method": "pooled", "count": len(periods or []), "used": len(periods or [])}
    common = [
        p
        for p in periods
        if all(p.arms.get(name, ClusteredRatioSummary.empty()).n_users >= 2 for name in arms)
        and all(p.arms[name].sum_n > 0 for name in arms)
    ]
    info: dict[str, Any] = {"method": "stratified", "count": len(periods), "used": len(common)}
    if not common:
        warnings.append(
            {
                "code": "no_common_period",
                "arm": None,
                "message": "No allocation period has traffic on every arm; comparisons use pooled "
                "totals and may be confounded by time trends.",
            }
        )
        info["method"] = "pooled"
        return pooled, info
    if len(common) < len(periods):
        warnings.append(
            {
                "code": "periods_excluded",
                "arm": None,
                "message": f"{len(periods) - len(common)} allocation period(s) without traffic on every "
                "arm are left out of the comparisons.",
            }
        )
    period_weights = [sum(p.arms[name].sum_n for name in arms) for p in common]
    estimates = {name: stratified_ctr([p.arms[name] for p in common], period_weights) for name in arms}
    for name, summary in arms.items():
        in_periods = sum(p.arms.get(name, ClusteredRatioSummary.empty()).sum_n for p in periods)
        if not math.isclose(in_periods, summary.sum_n, rel_tol=0.01, abs_tol=10):
            warnings.append(
                {
                    "code": "period_totals_mismatch",
                    "arm": name,
                    "message": f"Impressions over periods ({in_periods:g}) differ from the arm total "
                    f"({summary.sum_n:g}); the two were probably read at different moments.",
                }
            )
    return estimates, info


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
    Returns a dict that ``json.dumps(..., allow_nan=False)`` accepts.
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

    comp, period_info = _comparison_estimates(arms, periods, warnings)

    prev = dict(sequential_state or {})
    if prev and (prev.get("control") != control or prev.get("tau") != tau or prev.get("alpha") != alpha):
        warnings.append(
            {
                "code": "sequential_reset",
                "arm": None,
                "message": "Control, tau or alpha changed: the always-valid p-values restart.",
            }
        )
        prev = {}
    prev_arms: Mapping[str, Any] = prev.get("arms", {})

    out: dict[str, dict[str, Any]] = {}
    new_state: dict[str, Any] = {}
    p_fixed: dict[str, float | None] = {}
    p_seq: dict[str, float | None] = {}
    c_sum = arms[control]
    for name, s in arms.items():
        pooled = ctr_estimate(s)
        row: dict[str, Any] = {
            "arm": name,
            "is_control": name == control,
            "weight": float(weights.get(name, 0.0)) / total_w,
            "users": s.n_users,
            "user_share": s.n_users / total_users,
            "impressions": s.sum_n,
            "clicks": s.sum_c,
            "ctr": pooled.value,
            "ctr_se": pooled.se,
            "ctr_ci": _interval(pooled, confidence, 0.0, 1.0),
            "design_effect": design_effect(s),
            "ctr_adjusted": comp[name].value,
            "ctr_adjusted_ci": _interval(comp[name], confidence, 0.0, 1.0),
        }
        few = not bool(enough_data(s.sum_c, s.n_users))
        if few:
            warnings.append(
                {
                    "code": "few_data",
                    "arm": name,
                    "message": f"Fewer than {MIN_CLICKS} clicks or {MIN_USERS} users: intervals "
                    "are rough and the sequential test waits.",
                }
            )
        if name != control:
            diff = difference(comp[name], comp[control])
            lift = relative_lift(comp[name], comp[control])
            state = SequentialState.from_dict(prev_arms.get(name))
            ready = not few and bool(enough_data(c_sum.sum_c, c_sum.n_users))
            if ready:
                state = msprt_update(state, estimate=lift.value, variance=lift.variance, tau=tau, alpha=alpha)
            new_state[name] = state.to_dict()
            p_fixed[name] = fixed_horizon_p(diff) if diff.defined else None
            p_seq[name] = state.always_valid_p
            row.update(
                {
                    "abs_diff": diff.value,
                    "abs_diff_ci": _interval(diff, confidence),
                    "lift": lift.value,
                    "lift_ci": _interval(lift, confidence),
                    "p_value": p_fixed[name],
                    "always_valid_p": state.always_valid_p,
                    "lift_cs": [state.cs_lower, state.cs_upper],
                }
            )
        out[name] = row

    holm_fixed = holm_adjust(p_fixed)
    holm_seq = holm_adjust(p_seq)
    for name, row in out.items():
        if name == control:
            row.update(
                {
                    key: None
                    for key in (
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
                }
            )
            row["significant"] = False
            row["significant_sequential"] = False
            continue
        row["p_value_holm"] = holm_fixed[name]
        row["always_valid_p_holm"] = holm_seq[name]
        row["significant"] = holm_fixed[name] is not None and holm_fixed[name] < alpha
        row["significant_sequential"] = holm_seq[name] is not None and holm_seq[name] < alpha

    bayes_arms = [n for n in arms if comp[n].defined]
    for row in out.values():
        row["p_best"] = None
        row["expected_loss"] = None
    if bayes_arms:
        pb, loss = p_best_expected_loss(
            [comp[n].value for n in bayes_arms], [comp[n].variance for n in bayes_arms], seed=seed, draws=draws
        )
        for n, p, el in zip(bayes_arms, pb, loss, strict=True):
            out[n]["p_best"] = float(p)
            out[n]["expected_loss"] = float(el)
    if len(bayes_arms) < len(arms):
        warnings.append(
            {
                "code": "bayes_partial",
                "arm": None,
                "message": "P(best) leaves out arms with fewer than two users or no impressions.",
            }
        )

    srm = _srm(arms, weights, periods)
    if srm["alert"]:
        warnings.append(
            {
                "code": "srm",
                "arm": None,
                "message": f"Sample-ratio mismatch (p = {srm['p_value']:.2g} < {SRM_P_THRESHOLD}): "
                "assignment or logging is broken; do not trust the comparisons.",
            }
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
        "comparison": {**period_info, "tau": tau, "sequential_scale": "relative_lift"},
        "bayes": {"method": "normal_clustered", "draws": draws, "seed": seed},
        "sequential_state": {"control": control, "tau": tau, "alpha": alpha, "arms": new_state},
        "warnings": warnings,
    }
    return _clean(report)
