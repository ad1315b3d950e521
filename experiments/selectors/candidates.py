"""The candidates table of the dashboard: weight-0 arms beside the live ones, with their newest offline estimate."""

from __future__ import annotations

from typing import Any

from experiments.models import Arm, Experiment, OfflineEstimate
from experiments.offline.obd_import import LOGGED_KIND_PREFIX
from experiments.selectors.results import offline_estimate_summary

SHOWN_ESTIMATORS = ("dr", "snips", "ips")


def is_candidate(arm: Arm, experiment: Experiment) -> bool:
    return (arm.weight == 0 and arm.status == Arm.Status.ACTIVE and arm.id != experiment.winner_id
            and not arm.kind.startswith(LOGGED_KIND_PREFIX))


def candidate_rows(*, experiment: Experiment) -> list[dict[str, Any]]:
    """One row per candidate (active, weight 0): DR, SNIPS and IPS with their intervals (clipped to [0, 1], with the
    reason), the effective sample size and the largest importance weight, or "insufficient overlap"."""
    arms = [a for a in experiment.arms.order_by("id") if is_candidate(a, experiment)]
    latest = {}
    for row in (OfflineEstimate.objects.filter(experiment=experiment, arm_name__in=[a.name for a in arms])
                .order_by("arm_name", "-computed_at", "-id").distinct("arm_name")):
        latest[row.arm_name] = offline_estimate_summary(row)
    out = []
    for arm in arms:
        estimate = latest.get(arm.name)
        estimators = []
        if estimate is not None:
            for name in SHOWN_ESTIMATORS:
                e = estimate["estimators"].get(name)
                if e is not None:
                    estimators.append({"name": name, **e})
        out.append({"arm": arm, "estimate": estimate, "estimators": estimators,
                    "ess": round(estimate["effective_sample_size"]) if estimate else None})
    return out
