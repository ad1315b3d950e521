"""Business metrics beside CTR: conversion rate and revenue per user, with the same machinery as the CTR report.

Each metric is a ratio of per-user totals clustered by user (:class:`~experiments.stats.summaries.RatioSummary`):

* ``ctr`` — clicks / impressions (n_u = the user's impressions): :func:`experiments.stats.report.experiment_report`
  computes it; :func:`ctr_metric` only reshapes its rows.
* ``conversion_rate`` — purchasing users / users (n_u = 1, c_u = 1 if the user bought anything).
* ``revenue_per_user`` — revenue / users (n_u = 1, c_u = the user's revenue).

For n_u = 1 the clustered delta-method variance is the plain CLT on users, s²/K. Per metric and arm
(:func:`metric_section`): the estimate with its interval; against the control the lift with its delta-method
interval, the fixed-horizon p and the always-valid p (mSPRT on the relative lift, the running state carried from
tick to tick), Holm-adjusted across arms; P(best) and expected loss on the normal posterior; and, when the traffic
split changed, each arm standardised over the allocation periods it shares with the control, exactly as CTR
(:mod:`experiments.stats.periods`, with the periods weighted by their users). docs/statistics.md §19.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from experiments.stats.bayes import DEFAULT_DRAWS, p_best_expected_loss
from experiments.stats.frequentist import Estimate, ctr_estimate, difference, fixed_horizon_p, relative_lift
from experiments.stats.multiple import holm_adjust
from experiments.stats.periods import competitors, pairwise
from experiments.stats.sequential import DEFAULT_TAU, SequentialState, enough_data, msprt_update
from experiments.stats.summaries import AllocationPeriod, AnyRatioSummary

METRICS = ("ctr", "conversion_rate", "revenue_per_user")
# Interval bounds of each metric: rates stay in [0, 1], revenue is non-negative.
BOUNDS = {"ctr": (0.0, 1.0), "conversion_rate": (0.0, 1.0), "revenue_per_user": (0.0, math.inf)}


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _ci(est: Estimate, confidence: float, lo: float = -math.inf, hi: float = math.inf) -> tuple[Any, Any]:
    if not est.defined:
        return None, None
    a, b = est.interval(confidence)
    return max(a, lo), min(b, hi)


def ordered(names: Sequence[str], primary: str) -> list[str]:
    """The metric names with the primary first, the others in their built-in order."""
    if primary not in names:
        raise ValueError(f"primary metric {primary!r} is not one of {list(names)}")
    return [primary, *(n for n in names if n != primary)]


def metric_section(
    name: str,
    arms: Mapping[str, AnyRatioSummary],
    *,
    control: str,
    events: Mapping[str, float],
    periods: Sequence[AllocationPeriod] | None = None,
    sequential_state: Mapping[str, Any] | None = None,
    primary: bool = False,
    seed: int = 0,
    alpha: float = 0.05,
    tau: float = DEFAULT_TAU,
    draws: int = DEFAULT_DRAWS,
) -> dict[str, Any]:
    """One metric of every arm (module doc). ``events``: per arm the count that gates the sequential test as clicks
    gate CTR's (purchasing users for the purchase metrics; ``sequential.enough_data``). ``sequential_state``: this
    metric's ``"sequential_state"`` from the previous tick. Undefined numbers are None.
    """
    if control not in arms:
        raise ValueError(f"control arm {control!r} is not among the arms {sorted(arms)}")
    confidence = 1.0 - alpha
    lo, hi = BOUNDS.get(name, (-math.inf, math.inf))
    prev = dict(sequential_state or {})
    if prev and (prev.get("control") != control or prev.get("tau") != tau or prev.get("alpha") != alpha):
        prev = {}
    prev_arms: Mapping[str, Any] = prev.get("arms", {})
    ranking = competitors(arms, periods)
    control_ready = bool(enough_data(events.get(control, 0), arms[control].n_users))
    rows: dict[str, dict[str, Any]] = {}
    new_state: dict[str, Any] = {}
    p_fixed: dict[str, float | None] = {}
    p_seq: dict[str, float | None] = {}
    for arm, s in arms.items():
        est = ctr_estimate(s)
        ci_low, ci_high = _ci(est, confidence, lo, hi)
        rows[arm] = row = {
            "arm": arm, "is_control": arm == control, "value": _finite(est.value), "se": _finite(est.se),
            "ci_low": ci_low, "ci_high": ci_high, "users": int(s.n_users), "numerator": float(s.sum_c),
            "denominator": float(s.sum_n), "events": float(events.get(arm, 0)),
            "lift": None, "lift_ci_low": None, "lift_ci_high": None, "abs_diff": None, "p_value": None,
            "p_value_holm": None, "always_valid_p": None, "always_valid_p_holm": None, "lift_cs": None,
            "periods_used": None, "p_best": None, "expected_loss": None,
        }
        if arm == control:
            continue
        comp = pairwise(arms, periods, treat=arm, control=control)
        diff, lift = difference(comp.treat, comp.control), relative_lift(comp.treat, comp.control)
        state = SequentialState.from_dict(prev_arms.get(arm))
        if control_ready and bool(enough_data(events.get(arm, 0), s.n_users)):
            state = msprt_update(state, estimate=lift.value, variance=lift.variance, tau=tau, alpha=alpha)
        new_state[arm] = state.to_dict()
        p_fixed[arm] = fixed_horizon_p(diff) if diff.defined else None
        p_seq[arm] = state.always_valid_p
        row["lift_ci_low"], row["lift_ci_high"] = _ci(lift, confidence)
        row.update({"lift": _finite(lift.value), "abs_diff": _finite(diff.value), "p_value": _finite(p_fixed[arm]),
                    "always_valid_p": state.always_valid_p, "lift_cs": [state.cs_lower, state.cs_upper],
                    "periods_used": comp.periods_used})
    holm_fixed, holm_seq = holm_adjust(p_fixed), holm_adjust(p_seq)
    for arm in p_fixed:
        rows[arm]["p_value_holm"] = _finite(holm_fixed[arm])
        rows[arm]["always_valid_p_holm"] = _finite(holm_seq[arm])
    racing = [n for n in ranking.estimates if ranking.estimates[n].defined]
    if racing:
        pb, loss = p_best_expected_loss([ranking.estimates[n].value for n in racing],
                                        [ranking.estimates[n].variance for n in racing], seed=seed, draws=draws)
        for arm, p, el in zip(racing, pb, loss, strict=True):
            rows[arm]["p_best"], rows[arm]["expected_loss"] = float(p), float(el)
    return {
        "name": name,
        "primary": primary,
        "control": control,
        "method": "stratified" if ranking.stratified else "pooled",
        "arms": list(rows.values()),
        "sequential_state": {"control": control, "tau": tau, "alpha": alpha, "arms": new_state},
    }


def ctr_metric(report: Mapping[str, Any], *, primary: bool = False) -> dict[str, Any]:
    """The ``ctr`` entry of the metrics list, read off an ``experiment_report`` (the same numbers as its rows)."""
    rows = []
    for arm in report["arm_order"]:
        r = report["arms"][arm]
        ci, lift_ci = r.get("ctr_ci") or [None, None], r.get("lift_ci") or [None, None]
        rows.append({
            "arm": arm, "is_control": r["is_control"], "value": r["ctr"], "se": r.get("ctr_se"),
            "ci_low": ci[0], "ci_high": ci[1], "users": r["users"], "numerator": r["clicks"],
            "denominator": r["impressions"], "events": r["clicks"], "lift": r.get("lift"),
            "lift_ci_low": lift_ci[0], "lift_ci_high": lift_ci[1], "abs_diff": r.get("abs_diff"),
            "p_value": r.get("p_value"), "p_value_holm": r.get("p_value_holm"),
            "always_valid_p": r.get("always_valid_p"), "always_valid_p_holm": r.get("always_valid_p_holm"),
            "lift_cs": r.get("lift_cs"), "periods_used": r.get("periods_used"), "p_best": r.get("p_best"),
            "expected_loss": r.get("expected_loss"),
        })
    return {"name": "ctr", "primary": primary, "control": report["control"],
            "method": report["comparison"]["method"], "arms": rows}
