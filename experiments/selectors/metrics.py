"""Reads of the metrics beside CTR: conversion rate and revenue per user from the outcome running sums, live CUPED
from the covariate running sums, and the ``metrics`` list of a tick's payload (primary metric first).

Everything comes from rows the stats tick folds (``services.metric_fold``): a few rows per arm and period,
whatever the experiment's size. The maths is in ``experiments.stats.metrics`` and ``experiments.stats.cuped``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from experiments.business_models import METRICS, ArmEpochCupedSums, ArmEpochOutcomeSums
from experiments.models import Arm, Experiment
from experiments.selectors.rollups import StatsInputs
from experiments.stats.cuped import CupedSums, cuped_section
from experiments.stats.metrics import ctr_metric, metric_section, ordered
from experiments.stats.summaries import AllocationPeriod, RatioSummary

OUTCOME_METRICS = ("conversion_rate", "revenue_per_user")
CUPED_FIELDS = ("sum_n0", "sum_c0", "sum_n0n0", "sum_c0c0", "sum_n0c0", "sum_nn0", "sum_nc0", "sum_cn0", "sum_cc0")


@dataclass(frozen=True)
class MetricInputs:
    """One metric's per-arm totals, per-period summaries (the CTR periods' weights) and sequential gate counts."""

    arms: dict[str, RatioSummary]
    periods: list[AllocationPeriod]
    events: dict[str, float]


def arm_epoch_outcomes(*, arm_ids: list[int]) -> dict[tuple[int, int], tuple[int, int, float, float]]:
    """(arm id, epoch) → (purchasers, purchases, Σrevenue, Σrevenue²) as of the last stats tick."""
    rows = ArmEpochOutcomeSums.objects.filter(arm_id__in=arm_ids).values_list(
        "arm_id", "epoch", "purchasers", "purchases", "revenue", "revenue_sq")
    return {(a, e): (int(p), int(k), float(r), float(rr)) for a, e, p, k, r, rr in rows}


def arm_epoch_cuped(*, arm_ids: list[int]) -> dict[tuple[int, int], tuple[int, ...]]:
    """(arm id, epoch) → (users with a covariate, the nine covariate sums in ``CUPED_FIELDS`` order)."""
    rows = ArmEpochCupedSums.objects.filter(arm_id__in=arm_ids).values_list("arm_id", "epoch", "users",
                                                                           *CUPED_FIELDS)
    return {(row[0], row[1]): tuple(int(x) for x in row[2:]) for row in rows}


def outcome_metric_inputs(*, arms: list[Arm], inputs: StatsInputs) -> dict[str, MetricInputs]:
    """Conversion rate and revenue per user as per-user means (n_u = 1) over the users of the CTR rollup.

    The users of an (arm, period) are ArmEpochSums' ``n_users`` (an event counts for the rollup row its impression
    created, so its user is one of them); a purchaser folded a moment before their impression would be is counted
    as a user too, so the rate never exceeds 1.
    """
    outcomes = arm_epoch_outcomes(arm_ids=[arm.id for arm in arms])
    per: dict[str, list[dict[str, RatioSummary]]] = {name: [] for name in OUTCOME_METRICS}
    events = {arm.name: 0.0 for arm in arms}
    for epoch, period in zip(inputs.epochs, inputs.periods, strict=True):
        conv, rev = {}, {}
        for arm in arms:
            users = period.arms[arm.name].n_users
            purchasers, _, revenue, revenue_sq = outcomes.get((arm.id, epoch), (0, 0, 0.0, 0.0))
            k = max(int(users), purchasers)
            conv[arm.name] = RatioSummary.per_user_mean(n_users=k, total=purchasers, total_sq=purchasers)
            rev[arm.name] = RatioSummary.per_user_mean(n_users=k, total=revenue, total_sq=revenue_sq)
            events[arm.name] += purchasers
        per["conversion_rate"].append(conv)
        per["revenue_per_user"].append(rev)
    out = {}
    for name, by_period in per.items():
        totals = {arm.name: RatioSummary.empty() for arm in arms}
        for summaries in by_period:
            for arm_name, s in summaries.items():
                totals[arm_name] = totals[arm_name] + s
        periods = [replace(p, arms=s, assigned=None) for p, s in zip(inputs.periods, by_period, strict=True)]
        out[name] = MetricInputs(arms=totals, periods=periods, events=dict(events))
    return out


def cuped_inputs(*, arms: list[Arm], inputs: StatsInputs) -> dict[str, CupedSums | None]:
    """Per arm the fifteen CUPED sums over its periods; None when some user of the arm has no covariate in them."""
    cuped = arm_epoch_cuped(arm_ids=[arm.id for arm in arms])
    out: dict[str, CupedSums | None] = {}
    for arm in arms:
        six, nine, complete = [0.0] * 6, [0.0] * 9, True
        for epoch, period in zip(inputs.epochs, inputs.periods, strict=True):
            s = period.arms[arm.name]
            if s.n_users == 0:
                continue
            row = cuped.get((arm.id, epoch))
            if row is None or row[0] != s.n_users:
                complete = False
                break
            six = [a + b for a, b in zip(six, (s.n_users, s.sum_n, s.sum_c, s.sum_nn, s.sum_cc, s.sum_nc), strict=True)]
            nine = [a + b for a, b in zip(nine, row[1:], strict=True)]
        out[arm.name] = CupedSums(*six, *nine) if complete and six[0] > 0 else None
    return out


def metrics_section(*, experiment: Experiment, arms: list[Arm], inputs: StatsInputs, report: dict[str, Any],
                    previous: dict | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The payload's ``metrics`` list (primary first; CUPED per arm inside ``ctr``) and their sequential state."""
    primary = experiment.primary_metric
    prev_state = (previous or {}).get("metrics_state") or {}
    sections = {"ctr": ctr_metric(report, primary=primary == "ctr")}
    state: dict[str, Any] = {}
    for name, mi in outcome_metric_inputs(arms=arms, inputs=inputs).items():
        section = metric_section(name, mi.arms, control=inputs.control, events=mi.events, periods=mi.periods,
                                 sequential_state=prev_state.get(name), primary=primary == name, seed=experiment.id,
                                 alpha=report["alpha"])
        state[name] = section.pop("sequential_state")
        sections[name] = section
    cuped = cuped_section(cuped_inputs(arms=arms, inputs=inputs), control=inputs.control,
                          confidence=1.0 - report["alpha"])
    for row in sections["ctr"]["arms"]:
        row["cuped"] = cuped.get(row["arm"])
    return [sections[name] for name in ordered(METRICS, primary)], state


def primary_metric_rows(payload: dict) -> dict[str, dict[str, Any]] | None:
    """Arm name → the primary metric's row of a payload, or None when the primary is CTR (its rows are the
    report's) or the payload predates the metrics."""
    primary = (payload.get("experiment") or {}).get("primary_metric", "ctr")
    if primary == "ctr":
        return None
    section = next((m for m in payload.get("metrics") or [] if m["name"] == primary), None)
    return None if section is None else {row["arm"]: row for row in section["arms"]}
