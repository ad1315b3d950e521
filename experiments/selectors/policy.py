"""Reads of how traffic is steered: the allocation policy, each change of the split, and the guardrails' banners.

Part of every stats tick's payload (``payload["allocation"]``, ``payload["guardrails"]``), so the dashboard
shows them live and the traffic chart marks each change (``charts.allocation_markers``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from experiments import charts
from experiments.models import AllocationEpoch, Arm, Decision, Experiment

# The traffic chart marks at most this many of the latest changes.
CHANGES_SHOWN = 30
# A guardrail's banner stays this long (a pause: for as long as the arm stays paused).
BANNER_FOR = timedelta(hours=24)
GUARDRAIL_ACTIONS = (Decision.Action.GUARDRAIL_PAUSE, Decision.Action.GUARDRAIL_ROLLBACK)
STATUS_ACTIONS = (Decision.Action.PAUSE, Decision.Action.RESUME, Decision.Action.GUARDRAIL_PAUSE)


def decision_actor(decision: Decision | None) -> str | None:
    """Who made a decision: the user, or "policy" / "guardrail" for the system's own."""
    if decision is None:
        return None
    if decision.user_id is not None:
        return decision.user.get_username()
    return "guardrail" if decision.action in GUARDRAIL_ACTIONS else "policy"


def allocation_changes(*, experiment: Experiment, limit: int = CHANGES_SHOWN) -> list[dict[str, Any]]:
    """Each allocation period after the first, oldest first: when it started, its weights, the decision that opened it."""
    rows = (
        AllocationEpoch.objects.filter(experiment=experiment, epoch__gt=0)
        .select_related("decision", "decision__user")
        .order_by("-epoch")[:limit]
    )
    return [
        {
            "epoch": row.epoch,
            "at": row.started_at.isoformat(),
            "weights": row.weights,
            "action": row.decision.action if row.decision_id else None,
            "decision_id": row.decision_id,
            "by": decision_actor(row.decision),
        }
        for row in reversed(list(rows))
    ]


def allocation_summary(*, experiment: Experiment) -> dict[str, Any]:
    """The policy, its next re-evaluation, each change of the split and the chart markers of those changes."""
    changes = allocation_changes(experiment=experiment)
    return {
        "policy": experiment.policy,
        "floor": experiment.policy_floor,
        "interval_minutes": experiment.policy_interval_minutes,
        "next_at": experiment.policy_next_at.isoformat() if experiment.policy_next_at else None,
        "guardrails": experiment.guardrails,
        "guardrail_alpha": experiment.guardrail_alpha,
        "changes": changes,
        "markers": charts.allocation_markers(changes),
    }


def guardrail_banners(*, experiment: Experiment, now: datetime | None = None) -> list[dict[str, Any]]:
    """The guardrails' recent actions, newest first; a pause stays while its arm is still paused."""
    now = now or timezone.now()
    paused = set(Arm.objects.filter(experiment=experiment, status=Arm.Status.PAUSED).values_list("id", flat=True))
    decisions = (
        Decision.objects.filter(experiment=experiment, action__in=GUARDRAIL_ACTIONS)
        .select_related("arm")
        .order_by("-created_at", "-id")[:20]
    )
    out = []
    for d in decisions:
        in_force = d.action == Decision.Action.GUARDRAIL_PAUSE and d.arm_id in paused and not Decision.objects.filter(
            arm_id=d.arm_id, created_at__gt=d.created_at, action__in=STATUS_ACTIONS).exists()
        if not in_force and now - d.created_at > BANNER_FOR:
            continue
        out.append({
            "decision_id": d.id,
            "action": d.action,
            "arm": d.arm.name if d.arm_id else None,
            "rule": (d.stats_snapshot or {}).get("guardrail", {}).get("rule"),
            "message": d.reason.removeprefix("Guardrail: "),
            "at": d.created_at.isoformat(),
            "in_force": in_force,
        })
    return out
