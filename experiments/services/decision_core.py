"""What every audited change shares: the permission, the reason, the locks, the evidence and the period bookkeeping.

Used by the operator's decisions (:mod:`~experiments.services.decisions`), the
experiment lifecycle (:mod:`~experiments.services.lifecycle`), the allocation
policy (:mod:`~experiments.services.allocation`) and the guardrails
(:mod:`~experiments.services.guardrails`). A change made by the system itself
(a policy re-allocation, a guardrail) has no user: it is recorded with
``user=None`` and shown under the name of its *actor* ("policy", "guardrail").
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from experiments import realtime
from experiments.errors import ApplicationError
from experiments.models import AllocationEpoch, Arm, Decision, Experiment
from experiments.selectors import results as result_selectors
from experiments.selectors import rollups as rollup_selectors
from experiments.services import stats_tick as tick_services
from experiments.services import webhooks as webhook_services
from experiments.services.assignment import holdout_split
from experiments.serving.versions import serving_config_notify

log = logging.getLogger(__name__)

PERMISSION = "experiments.promote_arm"
MAX_REASON = 2000

# How ``commit_change`` treats allocation periods.
NEW_PERIOD = "new"  # bump the epoch and record the new period's weights (any change of who gets traffic)
FIRST_PERIOD = "first"  # record the weights of the current epoch as opened now (an experiment's first start)
NO_PERIOD = "none"  # audit only (settings that do not move traffic by themselves)


def require_permission(user, what: str = "change traffic") -> None:
    if user is None or not user.is_authenticated or not user.is_staff or not user.has_perm(PERMISSION):
        raise ApplicationError("forbidden", f"Only staff with the promote_arm permission can {what}.", status=403)


def clean_reason(reason: str | None) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ApplicationError("reason_required", "Give a reason for the decision.", field="reason")
    if len(reason) > MAX_REASON:
        raise ApplicationError("reason_too_long", f"A reason has at most {MAX_REASON} characters.", field="reason")
    return reason


def lock(experiment_id: int) -> tuple[Experiment, list[Arm]]:
    """The experiment and its arms, locked FOR NO KEY UPDATE (impressions are never blocked)."""
    experiment = Experiment.objects.select_for_update(no_key=True).get(pk=experiment_id)
    arms = list(Arm.objects.select_for_update(no_key=True).filter(experiment=experiment).order_by("id"))
    return experiment, arms


def arm_of(arms: list[Arm], arm_id: int) -> Arm:
    for a in arms:
        if a.id == arm_id:
            return a
    raise ApplicationError("unknown_arm", "This arm is not part of the experiment.", status=404, field="arm")


def refuse_holdout_arm(experiment: Experiment, arm: Arm, *, what: str, field: str = "arm") -> None:
    """A running holdout's baseline serves its holdout and no one else: it is not paused, re-weighted or promoted."""
    if experiment.holdout_running and arm.id == experiment.holdout_arm_id:
        raise ApplicationError("holdout_arm", f"Arm {arm.name!r} is the holdout's baseline: end the holdout before "
                               f"you {what} it.", status=409, field=field)


def experiment_state(*, experiment: Experiment, arms: list[Arm]) -> dict:
    """Everything a decision can change, in a form a rollback can restore."""
    return {
        "status": experiment.status,
        "winner_id": experiment.winner_id,
        "concluded_at": experiment.concluded_at.isoformat() if experiment.concluded_at else None,
        "allocation_epoch": experiment.allocation_epoch,
        "arms": {str(arm.id): {"name": arm.name, "weight": arm.weight, "status": arm.status} for arm in arms},
        "holdout": {"arm_id": experiment.holdout_arm_id, "share": experiment.holdout_share,
                    "running": experiment.holdout_running},
    }


def evidence(experiment: Experiment) -> dict:
    """The full statistics at the moment of the decision (computed now, continuing the live state)."""
    arm_ids = list(experiment.arms.values_list("id", flat=True))
    if not arm_ids:
        return {}
    tick_services.rollup_fold(arm_ids=arm_ids)
    latest = result_selectors.snapshot_latest(experiment=experiment)
    return result_selectors.experiment_stats_payload(experiment=experiment, previous=latest.payload if latest else None)


def weights_from_state(state: dict, arms: list[Arm]) -> dict[str, float]:
    """The new-user split that a recorded state applied (what its period's weights were)."""
    if state.get("winner_id") is not None:
        out = {a.name: (1.0 if a.id == state["winner_id"] else 0.0) for a in arms}
    else:
        out = {}
        for a in arms:
            s = state["arms"].get(str(a.id), {})
            out[a.name] = float(s.get("weight", 0.0)) if s.get("status") == Arm.Status.ACTIVE else 0.0
    holdout = state.get("holdout") or {}
    name = next((a.name for a in arms if a.id == holdout.get("arm_id")), None)
    if name is None:
        return out
    out[name] = 0.0
    return holdout_split(out, holdout=name, share=float(holdout["share"])) if holdout.get("running") else out


def commit_change(
    *,
    experiment: Experiment,
    arms: list[Arm],
    action: str,
    arm: Arm | None,
    user,
    reason: str,
    previous_state: dict,
    evidence: dict,
    period: str = NEW_PERIOD,
    actor: str | None = None,
    experiment_fields: tuple[str, ...] = (),
) -> Decision:
    """Saves the locked experiment and arms, records the Decision and its period, and schedules the live push.

    With ``period=NEW_PERIOD`` the epoch moves on: the old period's weights are put on record first
    (if no tick did), then the new period's weights, with this decision as the one that opened it.
    """
    running = experiment.status == Experiment.Status.RUNNING
    if running and not any(a.status == Arm.Status.ACTIVE and a.weight > 0 for a in arms):
        raise ApplicationError("no_traffic", "At least one active arm must keep a positive weight.", status=409)
    if period == NEW_PERIOD:
        # The old period's weights must be on record before the epoch moves on.
        AllocationEpoch.objects.get_or_create(
            experiment=experiment,
            epoch=experiment.allocation_epoch,
            defaults={"weights": weights_from_state(previous_state, arms),
                      "started_at": experiment.started_at or timezone.now()},
        )
        experiment.allocation_epoch += 1
    experiment.save(update_fields=["status", "winner", "concluded_at", "allocation_epoch", *experiment_fields])
    for a in arms:
        a.save(update_fields=["weight", "status"])
    decision = Decision.objects.create(
        experiment=experiment, user=user, action=action, arm=arm, reason=reason, stats_snapshot=evidence,
        previous_state=previous_state,
    )
    if period in (NEW_PERIOD, FIRST_PERIOD):
        AllocationEpoch.objects.update_or_create(
            experiment=experiment,
            epoch=experiment.allocation_epoch,
            defaults={
                "weights": rollup_selectors.arm_effective_weights(experiment=experiment, arms=arms),
                "started_at": timezone.now(),
                "decision": decision,
            },
        )
    who = user.get_username() if user is not None else (actor or "system")
    slug, exp_id = experiment.slug, experiment.id
    event = realtime.decision_event(
        experiment=slug, decision_id=decision.id, action=action, arm=arm.name if arm else None, user=who,
    )
    tick = experiment.status != Experiment.Status.DRAFT
    _notify(experiment, decision, who)
    transaction.on_commit(lambda: _after_commit(exp_id, slug, event, tick))
    log.info(
        "decision_recorded experiment=%s action=%s arm=%s user=%s decision=%s epoch=%s",
        slug, action, arm.name if arm else None, who, decision.id, experiment.allocation_epoch,
    )
    return decision


_NOTIFY = {Decision.Action.PROMOTE: "promotion", Decision.Action.CONCLUDE: "conclusion",
           Decision.Action.GUARDRAIL_PAUSE: "guardrail", Decision.Action.GUARDRAIL_ROLLBACK: "guardrail"}


def _notify(experiment: Experiment, decision: Decision, who: str) -> None:
    """The decisions an experiment's webhook hears about (sent after commit by the webhooks service)."""
    event = _NOTIFY.get(decision.action)
    if event is None:
        return
    arm = decision.arm.name if decision.arm else None
    titles = {"promotion": f"{arm} promoted: it serves everyone", "conclusion": "Concluded",
              "guardrail": f"Guardrail: {decision.action.replace('guardrail_', '')} {arm}"}
    webhook_services.webhook_notify(experiment=experiment, event=event, title=titles[event], fields={
        "arm": arm, "by": who, "decision": decision.id, "reason": decision.reason[:500]})


def _after_commit(experiment_id: int, slug: str, event: realtime.DecisionEvent, tick: bool) -> None:
    serving_config_notify(what=f"decision:{slug}")
    realtime.publish(slug, event)
    if not tick:
        return
    try:
        tick_services.stats_tick(experiment_id=experiment_id)
    except Exception:
        # The committed decision stands; the next beat tick catches the dashboards up.
        log.exception("decision_tick_failed experiment=%s", slug)
