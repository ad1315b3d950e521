"""Decisions: promote, roll back, pause, resume, re-weight, roll a model back — each one audited.

Every service locks the experiment, records a ``Decision`` with the user, the
reason, the full statistics at that moment and the state it replaces, bumps the
allocation epoch (statistics are stratified by it) and, after commit, pushes a
fresh stats tick to the dashboards. Only holders of ``experiments.promote_arm``
may call them; the check is here so that no interface can forget it.

A model rollback (:func:`arm_rollback_to_checkpoint`) changes what an arm serves
rather than its traffic, so it opens no allocation period; it is audited the same way.
"""

from __future__ import annotations

import logging
import math

from django.db import connection, transaction
from django.utils import timezone

from experiments import realtime
from experiments.errors import ApplicationError
from experiments.models import AllocationEpoch, Arm, Decision, Experiment, ModelCheckpoint
from experiments.selectors import results as result_selectors
from experiments.selectors import rollups as rollup_selectors
from experiments.services import stats_tick as tick_services
from experiments.services.checkpoints import checkpoint_announce
from experiments.services.training import lock_key
from experiments.services.training_guard import Baseline

log = logging.getLogger(__name__)

PERMISSION = "experiments.promote_arm"
MAX_REASON = 2000


def _require_permission(user, what: str = "change traffic") -> None:
    if user is None or not user.is_authenticated or not user.is_staff or not user.has_perm(PERMISSION):
        raise ApplicationError("forbidden", f"Only staff with the promote_arm permission can {what}.", status=403)


def _clean_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ApplicationError("reason_required", "Give a reason for the decision.", field="reason")
    if len(reason) > MAX_REASON:
        raise ApplicationError("reason_too_long", f"A reason has at most {MAX_REASON} characters.", field="reason")
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
    tick_services.rollup_fold(arm_ids=list(experiment.arms.values_list("id", flat=True)))
    latest = result_selectors.snapshot_latest(experiment=experiment)
    return result_selectors.experiment_stats_payload(experiment=experiment, previous=latest.payload if latest else None)


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
        raise ApplicationError("no_traffic", "At least one active arm must keep a positive weight.", status=409)
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
        weights=rollup_selectors.arm_effective_weights(experiment=experiment, arms=arms),
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
    event = realtime.decision_event(
        experiment=slug, decision_id=decision.id, action=action, arm=arm.name if arm else None,
        user=user.get_username(),
    )
    transaction.on_commit(lambda: _after_commit(exp_id, slug, event))
    log.info(
        "decision_recorded experiment=%s action=%s arm=%s user=%s decision=%s epoch=%s",
        slug, action, arm.name if arm else None, user.get_username(), decision.id, experiment.allocation_epoch,
    )
    return decision


def _after_commit(experiment_id: int, slug: str, event: realtime.DecisionEvent) -> None:
    realtime.publish(slug, event)
    try:
        tick_services.stats_tick(experiment_id=experiment_id)
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
    raise ApplicationError("unknown_arm", "This arm is not part of the experiment.", status=404, field="arm")


def arm_promote(*, experiment: Experiment, arm: Arm, user, reason: str) -> Decision:
    """Sends every bucket to ``arm`` at once and concludes the experiment."""
    _require_permission(user)
    reason = _clean_reason(reason)
    with transaction.atomic():
        experiment, arms = _lock(experiment.id)
        target = _arm_of(arms, arm.id)
        if experiment.status != Experiment.Status.RUNNING:
            raise ApplicationError("not_running", "Only a running experiment can be concluded.", status=409)
        if target.status != Arm.Status.ACTIVE:
            raise ApplicationError("arm_not_active", "Resume the arm before promoting it.", status=409, field="arm")
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
            raise ApplicationError("not_reversible", "This decision recorded no state to restore.", status=409)
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
            raise ApplicationError("winner_gone", "The winner this state needs no longer exists.", status=409)
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
            raise ApplicationError("arm_retired", "A retired arm cannot take traffic.", status=409, field="arm")
        previous = experiment_state(experiment=experiment, arms=arms)
        if status is not None:
            if target.status == status:
                raise ApplicationError("no_change", f"The arm is already {status}.", status=409, field="arm")
            if status == Arm.Status.PAUSED and experiment.winner_id == target.id:
                raise ApplicationError("winner", "Roll back the promotion before pausing the winner.", status=409, field="arm")
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
        raise ApplicationError("invalid_weight", "The weight must be a number.", field="weight") from None
    if not math.isfinite(weight) or weight < 0 or weight > 1e6:
        raise ApplicationError("invalid_weight", "The weight must be a finite number between 0 and 1e6.", field="weight")
    return _set_arm(arm=arm, user=user, reason=reason, action=Decision.Action.REWEIGHT, weight=weight)


def arm_rollback_to_checkpoint(*, arm_id: int, version: int, user, reason: str) -> ModelCheckpoint:
    """Serve and train from a kept checkpoint again: a new version with its state. Staff with promote_arm only.

    The cursors stay where they are: the data since the old version is not
    replayed (it may be what went wrong). The arm is healthy again and the
    decision is audited with the version it replaced.
    """
    _require_permission(user, "roll back a model")
    reason = _clean_reason(reason)
    with transaction.atomic():
        with connection.cursor() as cur:
            # Waits for a training run of this arm to finish its step, then keeps trainers out until commit.
            cur.execute("SET LOCAL lock_timeout = '15s'")
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [lock_key(arm_id)])
        arm = Arm.objects.select_for_update(no_key=True).select_related("experiment").filter(pk=arm_id).first()
        if arm is None:
            raise ApplicationError("not_found", f"No arm {arm_id}.", status=404, field="arm")
        target = ModelCheckpoint.objects.filter(arm=arm, version=version).first()
        if target is None:
            raise ApplicationError("not_found", f"Version {version} of this arm is not kept.", status=404, field="version")
        head = ModelCheckpoint.objects.filter(arm=arm).order_by("-version").defer("state").first()
        baseline = Baseline.from_metrics(target.metrics)
        metrics = {
            "accepted": True,
            "reject_reason": "",
            "rollback_to": version,
            "rollback_from": head.version,
            "base_version": head.version,
            "imp_from": head.cursor,
            "imp_to": head.cursor,
            "click_from": head.click_cursor,
            "click_to": head.click_cursor,
            "n_impressions": 0,
            "n_clicks": 0,
            "n": 0,
            **baseline.as_metrics(),
        }
        new = ModelCheckpoint.objects.create(
            arm=arm,
            version=head.version + 1,
            state=target.state,
            metrics=metrics,
            cursor=head.cursor,
            click_cursor=head.click_cursor,
            examples_seen=target.examples_seen,
        )
        previous = {"version": head.version, "health": arm.health, "health_reason": arm.health_reason}
        arm.health, arm.health_reason = Arm.Health.HEALTHY, ""
        arm.save(update_fields=["health", "health_reason"])
        Decision.objects.create(
            experiment=arm.experiment,
            user=user,
            action=Decision.Action.CHECKPOINT_ROLLBACK,
            arm=arm,
            reason=reason,
            stats_snapshot={"to_version": version, "from_version": head.version, "target_metrics": target.metrics},
            previous_state=previous,
        )
        slug, name, new_version = arm.experiment.slug, arm.name, new.version
        transaction.on_commit(
            lambda: checkpoint_announce(arm_id=arm_id, slug=slug, arm_name=name, version=new_version, metrics=metrics)
        )
    log.info("checkpoint_rollback arm=%s to_version=%s new_version=%s user=%s", arm_id, version, new.version, user.pk)
    return new
