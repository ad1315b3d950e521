"""Reads of experiments as the operator API shows them: status, arms, leader, policy and guardrails."""

from __future__ import annotations

from typing import Any

from experiments.models import Arm, Decision, Experiment, StatsSnapshot
from experiments.selectors.arm_health import bounds_of
from experiments.selectors.layers import allocation_of, allocation_summary
from experiments.selectors.rollups import arm_effective_weights


def _leader(experiment: Experiment, arms: list[Arm], payload: dict | None) -> tuple[str | None, float | None]:
    """The winner of a concluded experiment, else the arm with the highest P(best) at the latest tick."""
    if experiment.winner_id is not None:
        return next((a.name for a in arms if a.id == experiment.winner_id), None), None
    rows = ((payload or {}).get("report") or {}).get("arms") or {}
    ranked = [(row["p_best"], name) for name, row in rows.items() if row.get("p_best") is not None]
    if not ranked:
        return None, None
    p_best, name = max(ranked)
    return name, p_best


def experiment_summary(*, experiment: Experiment, arms: list[Arm] | None = None,
                       payload: dict | None = None) -> dict[str, Any]:
    arms = arms if arms is not None else list(experiment.arms.order_by("id"))
    effective = arm_effective_weights(experiment=experiment, arms=arms) if arms else {}
    total = sum(effective.values()) or 1.0
    leader, p_best = _leader(experiment, arms, payload)
    by_id = {a.id: a.name for a in arms}
    return {
        "slug": experiment.slug,
        "name": experiment.name,
        "mode": experiment.mode,
        "primary_metric": experiment.primary_metric,
        "status": experiment.status,
        "control": by_id.get(experiment.control_arm_id),
        "winner": by_id.get(experiment.winner_id),
        "leader": leader,
        "leader_p_best": p_best,
        "allocation_epoch": experiment.allocation_epoch,
        "created_at": experiment.created_at.isoformat(),
        "started_at": experiment.started_at.isoformat() if experiment.started_at else None,
        "concluded_at": experiment.concluded_at.isoformat() if experiment.concluded_at else None,
        "conclusion": experiment.conclusion,
        "policy": {
            "kind": experiment.policy,
            "floor": experiment.policy_floor,
            "interval_minutes": experiment.policy_interval_minutes,
            "next_at": experiment.policy_next_at.isoformat() if experiment.policy_next_at else None,
        },
        "guardrails": {"enabled": experiment.guardrails, "alpha": experiment.guardrail_alpha,
                       "bounds": bounds_of(experiment).as_dict()},
        "layer": allocation_summary(allocation_of(experiment)),
        "holdout": None if experiment.holdout_arm_id is None else {
            "arm": by_id.get(experiment.holdout_arm_id),
            "share": experiment.holdout_share,
            "running": experiment.holdout_running,
            "ended_at": experiment.holdout_ended_at.isoformat() if experiment.holdout_ended_at else None,
        },
        "arms": [
            {
                "name": a.name,
                "kind": a.kind,
                "params": a.params,
                "weight": a.weight,
                "share": effective.get(a.name, 0.0) / total,
                "status": a.status,
                "health": a.health,
                "health_reason": a.health_reason,
            }
            for a in arms
        ],
    }


def experiment_summaries() -> list[dict[str, Any]]:
    """Every experiment, newest first, with its arms and its leader at the latest stats tick."""
    experiments = list(Experiment.objects.select_related("layer_allocation__layer", "guardrail_bounds").order_by("-created_at", "-id"))
    arms: dict[int, list[Arm]] = {}
    for arm in Arm.objects.filter(experiment__in=experiments).order_by("id"):
        arms.setdefault(arm.experiment_id, []).append(arm)
    latest = {
        s.experiment_id: s.payload
        for s in StatsSnapshot.objects.filter(experiment__in=experiments)
        .order_by("experiment_id", "-computed_at", "-id")
        .distinct("experiment_id")
    }
    return [experiment_summary(experiment=e, arms=arms.get(e.id, []), payload=latest.get(e.id)) for e in experiments]


def decision_summary(decision: Decision, *, user_name: str | None = None) -> dict[str, Any]:
    return {
        "id": decision.id,
        "action": decision.action,
        "arm": decision.arm.name if decision.arm_id else None,
        "user": user_name if user_name is not None else (decision.user.get_username() if decision.user_id else None),
        "reason": decision.reason,
        "created_at": decision.created_at.isoformat(),
    }
