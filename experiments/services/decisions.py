"""Decisions: promote, roll back, pause, resume, re-weight, roll a model back — each one audited.

Every service locks the experiment, records a ``Decision`` with the user, the
reason, the full statistics at that moment and the state it replaces, bumps the
allocation epoch (statistics are stratified by it) and, after commit, pushes a
fresh stats tick to the dashboards. Only holders of ``experiments.promote_arm``
may call them; the check is here so that no interface can forget it.

A model rollback (:func:`arm_rollback_to_checkpoint`) changes what an arm serves
rather than its traffic, so it opens no allocation period; it is audited the same way.
What all decisions share (locks, evidence, period bookkeeping) is in
:mod:`experiments.services.decision_core`; :func:`arm_status_set` and
:func:`checkpoint_rollback_apply` are the permission-free cores the guardrails call as the system.
"""

from __future__ import annotations

import logging
import math

from django.db import OperationalError, connection, transaction
from django.utils import timezone

from experiments import realtime
from experiments.errors import ApplicationError
from experiments.models import Arm, Decision, Experiment, ModelCheckpoint
from experiments.services.checkpoints import checkpoint_announce, checkpoint_model, state_compact
from experiments.services.decision_core import (
    MAX_REASON,
    PERMISSION,
    arm_of,
    clean_reason,
    commit_change,
    evidence,
    experiment_state,
    lock,
    refuse_holdout_arm,
    require_permission,
)
from experiments.services.training import lock_key
from experiments.services.training_guard import Baseline

log = logging.getLogger(__name__)

__all__ = [
    "MAX_REASON", "PERMISSION", "arm_pause", "arm_shadow", "arm_promote", "arm_resume", "arm_reweight", "arm_rollback_to_checkpoint",
    "REVERSIBLE", "arm_status_set", "checkpoint_rollback_apply", "decision_rollback", "experiment_reweight",
]

MAX_WEIGHT = 1e6
# Decisions whose traffic state a rollback restores (creating, starting, adding an arm or a setting are not undone so).
REVERSIBLE = frozenset({
    Decision.Action.PROMOTE, Decision.Action.ROLLBACK, Decision.Action.PAUSE, Decision.Action.RESUME,
    Decision.Action.REWEIGHT, Decision.Action.REALLOCATE, Decision.Action.GUARDRAIL_PAUSE, Decision.Action.STOP,
})


def arm_promote(*, experiment: Experiment, arm: Arm, user, reason: str) -> Decision:
    """Sends every bucket to ``arm`` at once and concludes the experiment."""
    require_permission(user)
    reason = clean_reason(reason)
    with transaction.atomic():
        experiment, arms = lock(experiment.id)
        target = arm_of(arms, arm.id)
        if experiment.status != Experiment.Status.RUNNING:
            raise ApplicationError("not_running", "Only a running experiment can be concluded.", status=409)
        if target.status != Arm.Status.ACTIVE:
            raise ApplicationError("arm_not_active", "Resume the arm before promoting it.", status=409, field="arm")
        refuse_holdout_arm(experiment, target, what="promote")
        previous = experiment_state(experiment=experiment, arms=arms)
        stats = evidence(experiment)
        experiment.winner = target
        experiment.status = Experiment.Status.CONCLUDED
        experiment.concluded_at = timezone.now()
        return commit_change(
            experiment=experiment, arms=arms, action=Decision.Action.PROMOTE, arm=target, user=user,
            reason=reason, previous_state=previous, evidence=stats,
        )


def decision_rollback(*, decision: Decision, user, reason: str) -> Decision:
    """Restores the weights, statuses and winner that ``decision`` replaced, as one more decision."""
    require_permission(user)
    reason = clean_reason(reason)
    with transaction.atomic():
        experiment, arms = lock(decision.experiment_id)
        restore = decision.previous_state or {}
        if decision.action not in REVERSIBLE or "arms" not in restore:
            raise ApplicationError("not_reversible", f"A {decision.action} decision cannot be rolled back this way"
                                   " (stop an experiment, pause an arm or set the policy instead).", status=409)
        previous = experiment_state(experiment=experiment, arms=arms)
        stats = evidence(experiment)
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
        return commit_change(
            experiment=experiment, arms=arms, action=Decision.Action.ROLLBACK, arm=decision.arm, user=user,
            reason=reason or f"rollback of decision {decision.id}", previous_state={**previous, "rolls_back": decision.id},
            evidence=stats,
        )


def arm_status_set(*, arm: Arm, status: str, user, reason: str, action: str, actor: str | None = None,
                   extra_evidence: dict | None = None) -> Decision:
    """Pauses or resumes one arm as one decision (a new period). No permission check: callers check it,
    or are the system itself (``user=None``, the guardrails)."""
    with transaction.atomic():
        experiment, arms = lock(arm.experiment_id)
        target = arm_of(arms, arm.id)
        if target.status == Arm.Status.RETIRED:
            raise ApplicationError("arm_retired", "A retired arm cannot take traffic.", status=409, field="arm")
        if target.status == status:
            raise ApplicationError("no_change", f"The arm is already {status}.", status=409, field="arm")
        refuse_holdout_arm(experiment, target, what="pause or resume")
        if status in (Arm.Status.PAUSED, Arm.Status.SHADOW) and experiment.winner_id == target.id:
            raise ApplicationError("winner", "Roll back the promotion before pausing the winner.", status=409, field="arm")
        if (status == Arm.Status.PAUSED and experiment.status == Experiment.Status.STOPPED
                and experiment.control_arm_id == target.id):
            raise ApplicationError("control_serves", "A stopped experiment serves its control: start it before "
                                   "pausing the control.", status=409, field="arm")
        previous = experiment_state(experiment=experiment, arms=arms)
        target.status = status
        stats = {**evidence(experiment), **(extra_evidence or {})}
        return commit_change(
            experiment=experiment, arms=arms, action=action, arm=target, user=user, reason=reason,
            previous_state=previous, evidence=stats, actor=actor,
        )


def arm_pause(*, arm: Arm, user, reason: str) -> Decision:
    """The arm takes no traffic; its users move to the other arms (by a second hash, as the weights say)."""
    require_permission(user)
    return arm_status_set(arm=arm, status=Arm.Status.PAUSED, user=user, reason=clean_reason(reason),
                          action=Decision.Action.PAUSE)


def arm_shadow(*, arm: Arm, user, reason: str) -> Decision:
    """The arm stops being shown (its users move, as in a pause) and ranks every served request in the shadow,
    learning from the served arms' clicks (services/shadow.py); resume makes it a live candidate again."""
    require_permission(user)
    if arm.experiment.mode != Experiment.Mode.AB:
        raise ApplicationError("not_ab", "Shadow arms are for A/B experiments: an interleaved slate shows every "
                               "arm.", status=409, field="arm")
    if arm.id == arm.experiment.control_arm_id:
        raise ApplicationError("control", "The control is compared against: it cannot go into the shadow.",
                               status=409, field="arm")
    return arm_status_set(arm=arm, status=Arm.Status.SHADOW, user=user, reason=clean_reason(reason),
                          action=Decision.Action.SHADOW)


def arm_resume(*, arm: Arm, user, reason: str) -> Decision:
    """The arm takes new users again; nobody moves back (its former users stay where the pause sent them)."""
    require_permission(user)
    return arm_status_set(arm=arm, status=Arm.Status.ACTIVE, user=user, reason=clean_reason(reason),
                          action=Decision.Action.RESUME)


def _weight(value, field: str) -> float:
    if isinstance(value, bool):
        raise ApplicationError("invalid_weight", "The weight must be a number.", field=field)
    try:
        weight = float(value)
    except (TypeError, ValueError):
        raise ApplicationError("invalid_weight", "The weight must be a number.", field=field) from None
    if not math.isfinite(weight) or weight < 0 or weight > MAX_WEIGHT:
        raise ApplicationError("invalid_weight", "The weight must be a finite number between 0 and 1e6.", field=field)
    return weight


def experiment_reweight(*, experiment: Experiment, weights: dict[str, float], user, reason: str,
                        field: str = "weights") -> Decision:
    """New traffic weights for some arms (by name), as one decision and one new allocation period.

    Weights steer **new** users only: returning users keep their arm (sticky assignment),
    and an active arm at weight 0 keeps its users but takes no new ones. Refused while an
    allocation policy steers the experiment (set the policy to ``fixed`` first).
    """
    require_permission(user)
    reason = clean_reason(reason)
    if not isinstance(weights, dict) or not weights:
        raise ApplicationError("required", "Give at least one arm's weight.", field=field)
    cleaned = {name: _weight(value, f"{field}.{name}") for name, value in weights.items()}
    with transaction.atomic():
        experiment, arms = lock(experiment.id)
        if experiment.policy != Experiment.Policy.FIXED:
            raise ApplicationError(
                "policy_managed", f"The {experiment.policy} allocation policy sets this experiment's weights; set the "
                "policy to fixed before setting weights by hand.", status=409, field=field)
        if experiment.status == Experiment.Status.CONCLUDED:
            raise ApplicationError("concluded", "A concluded experiment sends everyone to its winner; roll the "
                                   "promotion back first.", status=409)
        by_name = {a.name: a for a in arms}
        for name in cleaned:
            target = by_name.get(name)
            if target is None:
                raise ApplicationError("unknown_arm", f"The experiment has no arm {name!r}.", field=f"{field}.{name}")
            if target.status == Arm.Status.RETIRED:
                raise ApplicationError("arm_retired", f"Arm {name!r} is retired.", status=409, field=f"{field}.{name}")
            refuse_holdout_arm(experiment, target, what="re-weight", field=f"{field}.{name}")
        if all(by_name[name].weight == weight for name, weight in cleaned.items()):
            raise ApplicationError("no_change", "These are the weights already.", status=409, field=field)
        previous = experiment_state(experiment=experiment, arms=arms)
        for name, weight in cleaned.items():
            by_name[name].weight = weight
        stats = evidence(experiment)
        single = by_name[next(iter(cleaned))] if len(cleaned) == 1 else None
        return commit_change(
            experiment=experiment, arms=arms, action=Decision.Action.REWEIGHT, arm=single, user=user, reason=reason,
            previous_state=previous, evidence=stats,
        )


def arm_reweight(*, arm: Arm, weight: float, user, reason: str) -> Decision:
    """One arm's new weight (the dashboard's button); see :func:`experiment_reweight`."""
    return experiment_reweight(experiment=arm.experiment, weights={arm.name: weight}, user=user, reason=reason,
                               field="weight")


def arm_rollback_to_checkpoint(*, arm_id: int, version: int, user, reason: str) -> ModelCheckpoint:
    """Serve and train from a kept checkpoint again: a new version with its state. Staff with promote_arm only.

    The cursors stay where they are: the data since the old version is not
    replayed (it may be what went wrong). The arm is healthy again and the
    decision is audited with the version it replaced.
    """
    require_permission(user, "roll back a model")
    return checkpoint_rollback_apply(arm_id=arm_id, version=version, user=user, reason=clean_reason(reason),
                                     action=Decision.Action.CHECKPOINT_ROLLBACK)


def checkpoint_rollback_apply(*, arm_id: int, version: int, user, reason: str, action: str, actor: str | None = None,
                              extra_evidence: dict | None = None) -> ModelCheckpoint:
    """The rollback itself, audited as ``action`` (no permission check: the operator's path checks it, the
    guardrails are the system)."""
    with transaction.atomic():
        with connection.cursor() as cur:
            # Waits for a training run of this arm to finish its step, then keeps trainers out until commit.
            cur.execute("SET LOCAL lock_timeout = '15s'")
            try:
                with transaction.atomic():
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", [lock_key(arm_id)])
            except OperationalError:
                raise ApplicationError("training_busy", "The arm's trainer held it for 15 s; try again.",
                                       status=409) from None
        arm = Arm.objects.select_for_update(no_key=True).select_related("experiment").filter(pk=arm_id).first()
        if arm is None:
            raise ApplicationError("not_found", f"No arm {arm_id}.", status=404, field="arm")
        target = ModelCheckpoint.objects.filter(arm=arm, version=version).first()
        if target is None:
            raise ApplicationError("not_found", f"Version {version} of this arm is not kept.", status=404, field="version")
        head = ModelCheckpoint.objects.filter(arm=arm).order_by("-version").defer("state").first()
        if head.version == version:
            raise ApplicationError("no_change", f"Version {version} is the version serving now.", status=409,
                                   field="version")
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
        # A delta version is rolled back to as a snapshot of its whole chain.
        state = target.state if target.snapshot_version is None else state_compact(
            checkpoint_model(arm_id=arm.id, kind=arm.kind, version=version).to_bytes()
        )
        new = ModelCheckpoint.objects.create(
            arm=arm,
            version=head.version + 1,
            state=state,
            metrics=metrics,
            cursor=head.cursor,
            click_cursor=head.click_cursor,
            examples_seen=target.examples_seen,
        )
        new_version = new.version
        previous = {"version": head.version, "health": arm.health, "health_reason": arm.health_reason}
        arm.health, arm.health_reason = Arm.Health.HEALTHY, ""
        arm.save(update_fields=["health", "health_reason"])
        decision = Decision.objects.create(
            experiment=arm.experiment,
            user=user,
            action=action,
            arm=arm,
            reason=reason,
            stats_snapshot={"to_version": version, "from_version": head.version, "target_metrics": target.metrics,
                            **(extra_evidence or {})},
            previous_state=previous,
        )
        slug, name = arm.experiment.slug, arm.name
        event = realtime.decision_event(experiment=slug, decision_id=decision.id, action=action, arm=name,
                                        user=user.get_username() if user is not None else (actor or "system"))

        def announce() -> None:
            checkpoint_announce(arm_id=arm_id, slug=slug, arm_name=name, version=new_version, metrics=metrics)
            realtime.publish(slug, event)

        transaction.on_commit(announce)
    log.info("checkpoint_rollback arm=%s to_version=%s new_version=%s user=%s action=%s", arm_id, version, new_version,
             user.pk if user is not None else actor, action)
    return new
