"""Traffic decisions: promote, roll back, pause, resume, re-weight — each one audited.

Every service locks the experiment, records a ``Decision`` with the user, the
reason, the full statistics at that moment and the state it replaces, bumps the
allocation epoch (statistics are stratified by it) and, after commit, pushes a
fresh stats tick to the dashboards. Only holders of ``experiments.promote_arm``
may call them; the check is here so that no interface can forget it.
"""

from __future__ import annotations

import logging
import math

from django.db import transaction
from django.utils import timezone

from experiments import realtime
from experiments.models import AllocationEpoch, Arm, Decision, Experiment
from experiments.selectors import stats as stats_selectors
from experiments.services import stats as stats_services

log = logging.getLogger(__name__)

PERMISSION = "experiments.promote_arm"
MAX_REASON = 2000


class DecisionError(Exception):
    """A refused decision; ``code``/``field`` feed the API's error object, ``status`` its HTTP status."""

    def __init__(self, code: str, message: str, *, field: str | None = None, status: int = 400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.status = status


def _require_permission(user) -> None:
    if user is None or not user.is_authenticated or not user.is_staff or not user.has_perm(PERMISSION):
        raise DecisionError("forbidden", "Only staff with the promote_arm permission can change traffic.", status=403)


def _clean_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise DecisionError("reason_required", "Give a reason for the decision.", field="reason")
    if len(reason) > MAX_REASON:
        raise DecisionError("reason_too_long", f"A reason has at most {MAX_REASON} characters.", field="reason")
    return reason


def _lock(experiment_id: int) -> tuple[Experiment, list[Arm]]:
    experiment = Experiment.objects.select_for_update(no_key=True).get(pk=experiment_id)
    arms = list(Arm.objects.select_for_update(no_key=True).filter(experiment=experiment).order_by("id"))
    return experiment, arms


def experiment_state(*, experiment: Experiment, arms: list[Arm]) -> dict:
    """Everything a decision can change, in a form a rollback can restore."""
    return {
        "status": experiment.status,
        "winner_id": experiment.winner_id,
        "concluded_at": experiment.concluded_at.isoformat() if experiment.concluded_at else None,
        "allocation_epoch": experiment.allocation_epoch,
        "arms": {str(arm.id): {"name": arm.name, "weight": arm.weight, "status": arm.status} for arm in arms},
    }


def _evidence(experiment: Experiment) -> dict:
    """The full statistics at the moment of the decision (computed now, continuing the live state)."""
    stats_services.rollup_fold(arm_ids=list(experiment.arms.values_list("id", flat=True)))
    latest = stats_selectors.snapshot_latest(experiment=experiment)
    return stats_selectors.experiment_stats_payload(experiment=experiment, previous=latest.payload if latest else None)


def _commit_change(
    *,
    experiment: Experiment,
    arms: list[Arm],
    action: str,
    arm: Arm | None,
    user,
    reason: str,
    previous_state: dict,
    evidence: dict,
) -> Decision:
    """Bumps the epoch, records its weights and the Decision, and schedules the live push."""
    if not any(a.status == Arm.Status.ACTIVE and a.weight > 0 for a in arms) and experiment.winner_id is None:
        raise DecisionError("no_traffic", "At least one active arm must keep a positive weight.", status=409)
    # The old period's weights must be on record before the epoch moves on.
    old_weights = {
        name: float(w)
        for name, w in _weights_from_state(previous_state, arms).items()
    }
    AllocationEpoch.objects.get_or_create(
        experiment=experiment,
        epoch=experiment.allocation_epoch,
        defaults={"weights": old_weights, "started_at": experiment.started_at or timezone.now()},
    )
    experiment.allocation_epoch += 1
    experiment.save(update_fields=["status", "winner", "concluded_at", "allocation_epoch"])
    for a in arms:
        a.save(update_fields=["weight", "status"])
    AllocationEpoch.objects.create(
        experiment=experiment,
        epoch=experiment.allocation_epoch,
        weights=stats_selectors.arm_effective_weights(experiment=experiment, arms=arms),
        started_at=timezone.now(),
    )
    decision = Decision.objects.create(
        experiment=experiment,
        user=user,
        action=action,
        arm=arm,
        reason=reason,
        stats_snapshot=evidence,
        previous_state=previous_state,
    )
    slug, exp_id = experiment.slug, experiment.id
    event = {
        "type": "decision",
        "experiment": slug,
        "decision": {"id": decision.id, "action": action, "arm": arm.name if arm else None, "user": user.get_username()},
    }
    transaction.on_commit(lambda: _after_commit(exp_id, slug, event))
    log.info(
        "decision_recorded experiment=%s action=%s arm=%s user=%s decision=%s epoch=%s",
        slug, action, arm.name if arm else None, user.get_username(), decision.id, experiment.allocation_epoch,
    )
    return decision


def _after_commit(experiment_id: int, slug: str, event: dict) -> None:
    realtime.publish(slug, event)
    try:
        stats_services.stats_tick(experiment_id=experiment_id)
    except Exception:
        # The committed decision stands; the next beat tick catches the dashboards up.
        log.exception("decision_tick_failed experiment=%s", slug)


def _weights_from_state(state: dict, arms: list[Arm]) -> dict[str, float]:
    if state.get("winner_id") is not None:
        return {a.name: (1.0 if a.id == state["winner_id"] else 0.0) for a in arms}
    out = {}
    for a in arms:
        s = state["arms"].get(str(a.id), {})
        out[a.name] = float(s.get("weight", 0.0)) if s.get("status") == Arm.Status.ACTIVE else 0.0
    return out


def _arm_of(arms: list[Arm], arm_id: int) -> Arm:
    for a in arms:
        if a.id == arm_id:
            return a
    raise DecisionError("unknown_arm", "This arm is not part of the experiment.", field="arm", status=404)


def arm_promote(*, experiment: Experiment, arm: Arm, user, reason: str) -> Decision:
    """Sends every bucket to ``arm`` at once and concludes the experiment."""
    _require_permission(user)
    reason = _clean_reason(reason)
    with transaction.atomic():
        experiment, arms = _lock(experiment.id)
        target = _arm_of(arms, arm.id)
        if experiment.status != Experiment.Status.RUNNING:
            raise DecisionError("not_running", "Only a running experiment can be concluded.", status=409)
        if target.status != Arm.Status.ACTIVE:
            raise DecisionError("arm_not_active", "Resume the arm before promoting it.", field="arm", status=409)
        previous = experiment_state(experiment=experiment, arms=arms)
        evidence = _evidence(experiment)
        experiment.winner = target
        experiment.status = Experiment.Status.CONCLUDED
        experiment.concluded_at = timezone.now()
        return _commit_change(
            experiment=experiment, arms=arms, action=Decision.Action.PROMOTE, arm=target, user=user,
            reason=reason, previous_state=previous, evidence=evidence,
        )


def decision_rollback(*, decision: Decision, user, reason: str) -> Decision:
    """Restores the weights, statuses and winner that ``decision`` replaced, as one more decision."""
    _require_permission(user)
    reason = _clean_reason(reason)
    with transaction.atomic():
        experiment, arms = _lock(decision.experiment_id)
        restore = decision.previous_state or {}
        if "arms" not in restore:
            raise DecisionError("not_reversible", "This decision recorded no state to restore.", status=409)
        previous = experiment_state(experiment=experiment, arms=arms)
        evidence = _evidence(experiment)
        for a in arms:
            saved = restore["arms"].get(str(a.id))
            if saved is not None:
                a.weight = float(saved["weight"])
                a.status = saved["status"]
        winner_id = restore.get("winner_id")
        experiment.winner = next((a for a in arms if a.id == winner_id), None)
        experiment.status = restore.get("status", Experiment.Status.RUNNING)
        if experiment.status == Experiment.Status.CONCLUDED and experiment.winner is None:
            raise DecisionError("winner_gone", "The winner this state needs no longer exists.", status=409)
        experiment.concluded_at = timezone.now() if experiment.status == Experiment.Status.CONCLUDED else None
        return _commit_change(
            experiment=experiment, arms=arms, action=Decision.Action.ROLLBACK, arm=decision.arm, user=user,
            reason=reason or f"rollback of decision {decision.id}", previous_state={**previous, "rolls_back": decision.id},
            evidence=evidence,
        )


def _set_arm(*, arm: Arm, user, reason: str, action: str, status: str | None = None, weight: float | None = None):
    _require_permission(user)
    reason = _clean_reason(reason)
    with transaction.atomic():
        experiment, arms = _lock(arm.experiment_id)
        target = _arm_of(arms, arm.id)
        if target.status == Arm.Status.RETIRED:
            raise DecisionError("arm_retired", "A retired arm cannot take traffic.", field="arm", status=409)
        previous = experiment_state(experiment=experiment, arms=arms)
        if status is not None:
            if target.status == status:
                raise DecisionError("no_change", f"The arm is already {status}.", field="arm", status=409)
            if status == Arm.Status.PAUSED and experiment.winner_id == target.id:
                raise DecisionError("winner", "Roll back the promotion before pausing the winner.", field="arm", status=409)
            target.status = status
        if weight is not None:
            target.weight = weight
        evidence = _evidence(experiment)
        return _commit_change(
            experiment=experiment, arms=arms, action=action, arm=target, user=user, reason=reason,
            previous_state=previous, evidence=evidence,
        )


def arm_pause(*, arm: Arm, user, reason: str) -> Decision:
    return _set_arm(arm=arm, user=user, reason=reason, action=Decision.Action.PAUSE, status=Arm.Status.PAUSED)


def arm_resume(*, arm: Arm, user, reason: str) -> Decision:
    return _set_arm(arm=arm, user=user, reason=reason, action=Decision.Action.RESUME, status=Arm.Status.ACTIVE)


def arm_reweight(*, arm: Arm, weight: float, user, reason: str) -> Decision:
    try:
        weight = float(weight)
    except (TypeError, ValueError):
        raise DecisionError("invalid_weight", "The weight must be a number.", field="weight") from None
    if not math.isfinite(weight) or weight < 0 or weight > 1e6:
        raise DecisionError("invalid_weight", "The weight must be a finite number between 0 and 1e6.", field="weight")
    return _set_arm(arm=arm, user=user, reason=reason, action=Decision.Action.REWEIGHT, weight=weight)
