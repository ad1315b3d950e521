"""Schedules (issue 19): an experiment starts at ``start_at``, stops at ``stop_at``, and can stop itself once the
always-valid test has decided or every competing arm has the planned sample size. Beat runs
:func:`schedules_apply` every ``RECSITE_SCHEDULE_TICK_S`` (30 s); each start or stop is the same audited decision
an operator's button makes (``services.lifecycle``), made by the system (``user`` null, actor ``schedule``), with
the rule that fired in its reason and evidence.

"Stop" is the product's stop: the control serves everyone and no winner is declared; the operator reads the
evidence and promotes or concludes. A schedule never promotes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from experiments.errors import ApplicationError
from experiments.models import Decision, Experiment, ExperimentSchedule, StatsSnapshot
from experiments.selectors.planning import experiment_plan_current
from experiments.services.decision_core import NO_PERIOD, commit_change, experiment_state, lock, require_permission
from experiments.services.lifecycle import experiment_start, experiment_stop

log = logging.getLogger(__name__)

ACTOR = "schedule"


@dataclass(frozen=True)
class ScheduleSpec:
    start_at: datetime | None = None
    stop_at: datetime | None = None
    auto_stop: str = ExperimentSchedule.AutoStop.OFF
    planned_mde: float = 0.05
    planned_alpha: float = 0.05
    planned_power: float = 0.8


def _clean(spec: ScheduleSpec) -> ScheduleSpec:
    for name, value in (("start_at", spec.start_at), ("stop_at", spec.stop_at)):
        if value is not None and timezone.is_naive(value):
            raise ApplicationError("naive_time", f"{name} needs a time zone (e.g. 2026-12-24T08:00:00Z)", field=name)
    if spec.start_at and spec.stop_at and spec.stop_at <= spec.start_at:
        raise ApplicationError("stop_before_start", "The stop time must come after the start time.", field="stop_at")
    if spec.auto_stop not in ExperimentSchedule.AutoStop.values:
        raise ApplicationError("invalid_choice", f"auto_stop is one of {ExperimentSchedule.AutoStop.values}",
                               field="auto_stop")
    checks = (("planned_mde", 0 < spec.planned_mde < 10, "a relative lift between 0 and 10"),
              ("planned_alpha", 0 < spec.planned_alpha < 0.5, "between 0 and 0.5"),
              ("planned_power", 0.5 <= spec.planned_power < 1, "between 0.5 and 1"))
    for name, ok, what in checks:
        if not ok:
            raise ApplicationError("out_of_range", f"{name} must be {what}", field=name)
    return spec


def schedule_set(*, experiment: Experiment, spec: ScheduleSpec, user, reason: str | None = None) -> Decision:
    """Sets (or replaces) the experiment's schedule: an audited decision that moves no traffic by itself."""
    require_permission(user, "schedule experiments")
    spec = _clean(spec)
    with transaction.atomic():
        experiment, arms = lock(experiment.id)
        if experiment.status == Experiment.Status.CONCLUDED:
            raise ApplicationError("concluded", "A concluded experiment has nothing left to schedule.", status=409)
        previous = experiment_state(experiment=experiment, arms=arms)
        old = ExperimentSchedule.objects.filter(experiment=experiment).first()
        values = {"start_at": spec.start_at, "stop_at": spec.stop_at, "auto_stop": spec.auto_stop,
                  "planned_mde": spec.planned_mde, "planned_alpha": spec.planned_alpha,
                  "planned_power": spec.planned_power}
        ExperimentSchedule.objects.update_or_create(experiment=experiment, defaults=values)
        return commit_change(
            experiment=experiment, arms=arms, action=Decision.Action.SCHEDULE, arm=None, user=user,
            reason=(reason or "").strip() or "schedule set", previous_state=previous, period=NO_PERIOD,
            evidence={"schedule": {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in values.items()},
                      "replaced": old is not None},
        )


def _decided(experiment: Experiment) -> dict[str, Any] | None:
    """The challengers the always-valid test (Holm-adjusted) calls different from the control, from the newest tick."""
    newest = StatsSnapshot.objects.filter(experiment=experiment).order_by("-computed_at").first()
    if newest is None:
        return None
    report = newest.payload.get("report") or {}
    hits = {name: row.get("always_valid_p_holm") for name, row in (report.get("arms") or {}).items()
            if row.get("significant_sequential")}
    return {"rule": "decided", "arms": hits, "tick": newest.payload.get("seq")} if hits else None


def _planned(experiment: Experiment, schedule: ExperimentSchedule) -> dict[str, Any] | None:
    plan = experiment_plan_current(experiment=experiment, mde=schedule.planned_mde, alpha=schedule.planned_alpha,
                                   power=schedule.planned_power)
    if "error" in plan or plan["progress"] < 1.0:
        return None
    return {"rule": "planned", "impressions_per_arm": plan["impressions_per_arm"], "mde": plan["mde"],
            "alpha": plan["alpha"], "power": plan["power"]}


def _due(schedule: ExperimentSchedule, now: datetime) -> tuple[str, str, dict[str, Any]] | None:
    """(action, reason, evidence) of what the schedule asks for now, if anything."""
    experiment = schedule.experiment
    if experiment.status == Experiment.Status.DRAFT:
        if schedule.start_at and schedule.start_at <= now and not (schedule.stop_at and schedule.stop_at <= now):
            return "start", f"Scheduled start ({schedule.start_at.isoformat()}).", {"rule": "start_at"}
        return None
    if experiment.status != Experiment.Status.RUNNING:
        return None
    if schedule.stop_at and schedule.stop_at <= now:
        return "stop", f"Scheduled stop ({schedule.stop_at.isoformat()}).", {"rule": "stop_at"}
    if schedule.auto_stop == ExperimentSchedule.AutoStop.DECIDED:
        found = _decided(experiment)
        if found:
            arms = ", ".join(f"{name} (always-valid p {p:.4g})" for name, p in found["arms"].items())
            return "stop", f"Auto-stop: the always-valid test decided for {arms}.", found
    if schedule.auto_stop == ExperimentSchedule.AutoStop.PLANNED:
        found = _planned(experiment, schedule)
        if found:
            return "stop", (f"Auto-stop: every competing arm has the planned {found['impressions_per_arm']:,} "
                            f"impressions (MDE {found['mde']:g}, alpha {found['alpha']:g}, power {found['power']:g})."), found
    return None


def schedules_apply(*, now: datetime | None = None) -> list[Decision]:
    """Beat's tick: applies every schedule that is due (see module doc). A refused change (say, a stop whose
    control is paused) is logged and tried again on the next tick."""
    now = now or timezone.now()
    decisions: list[Decision] = []
    active = (ExperimentSchedule.objects.select_related("experiment")
              .filter(experiment__status__in=[Experiment.Status.DRAFT, Experiment.Status.RUNNING]))
    for schedule in active:
        due = _due(schedule, now)
        if due is None:
            continue
        action, reason, evidence = due
        try:
            if action == "start":
                decisions.append(experiment_start(experiment=schedule.experiment, user=None, reason=reason, actor=ACTOR))
            else:
                decisions.append(experiment_stop(experiment=schedule.experiment, user=None, reason=reason, actor=ACTOR,
                                                 extra_evidence={"schedule": evidence}))
        except ApplicationError as exc:
            log.warning("schedule_refused experiment=%s action=%s code=%s message=%s", schedule.experiment.slug,
                        action, exc.code, exc.message)
            continue
        log.info("schedule_applied experiment=%s action=%s rule=%s", schedule.experiment.slug, action, evidence["rule"])
    return decisions
