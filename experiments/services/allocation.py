"""Feedback control: an experiment's allocation policy, and its periodic re-evaluation (opt-in per experiment).

With ``policy`` ``thompson`` or ``top_two_thompson`` (:mod:`experiments.stats.allocation`),
beat runs :func:`policy_tick` every ``RECSITE_POLICY_TICK_S``; each experiment whose
``policy_next_at`` has come is re-evaluated (:func:`policy_evaluate`):

1. the arms in the policy are the active arms with a positive weight (a candidate at
   weight 0 stays out until an operator gives it a weight; a paused arm is out);
2. their CTRs, standardised over the allocation periods they share (the same
   estimates P(best) ranks), and the clustered variances are the posterior; with another
   ``primary_metric`` its estimates instead: conversion rate and revenue per user are per-user
   means, and their posterior is the normal approximation N(mean, s²/K) (large-sample, flat prior;
   revenue is far from Bernoulli, so no Beta posterior fits it), the same as CTR's;
3. burn-in: until every arm has the data the sequential test asks for (clicks, or purchasing
   users for the purchase metrics), nothing changes;
4. the new shares (floored) replace the weights when one of them moves by at least
   ``stats.allocation.MIN_CHANGE``; that is an audited decision (``reallocate``, no user, the posterior
   and both splits as evidence) that opens a new allocation period, so inference
   stays stratified by period.

With sticky assignment a re-weight steers **new** users only: returning users keep their
arm. A policy therefore shapes the split of arriving users, and its regret gain comes
from them (docs/statistics.md, "Feedback control").
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from experiments.business_models import METRICS
from experiments.errors import ApplicationError
from experiments.models import Arm, Decision, Experiment, GuardrailBounds
from experiments.selectors.arm_health import bounds_of
from experiments.selectors.metrics import outcome_metric_inputs
from experiments.selectors.rollups import StatsInputs, experiment_stats_inputs
from experiments.services import stats_tick as tick_services
from experiments.services.decision_core import (
    NO_PERIOD,
    clean_reason,
    commit_change,
    evidence,
    experiment_state,
    lock,
    require_permission,
)
from experiments.stats import allocation as policy_math
from experiments.stats.periods import competitors
from experiments.stats.sequential import enough_data
from experiments.stats.serving_health import Bounds, BoundsError

log = logging.getLogger(__name__)

MIN_FLOOR = 0.001


def _settings_state(experiment: Experiment) -> dict:
    return {
        "policy": experiment.policy,
        "policy_floor": experiment.policy_floor,
        "policy_interval_minutes": experiment.policy_interval_minutes,
        "guardrails": experiment.guardrails,
        "guardrail_alpha": experiment.guardrail_alpha,
        "primary_metric": experiment.primary_metric,
        "guardrail_bounds": bounds_of(experiment).as_dict(),
    }


def _bounds_clean(bounds: Any) -> Bounds:
    try:
        return Bounds.from_dict(bounds)
    except BoundsError as exc:
        raise ApplicationError("invalid_bound", str(exc), field=exc.field) from None


def policy_set(
    *, experiment: Experiment, policy: str, floor: float, interval_minutes: int, guardrails: bool,
    guardrail_alpha: float, user, reason: str, primary_metric: str | None = None,
    guardrail_bounds: dict[str, Any] | None = None,
) -> Decision:
    """The experiment's allocation policy and guardrail settings, its primary metric and its serving guardrail bounds
    (None: unchanged), as one audited decision (traffic moves at the policy's next evaluation, not now)."""
    require_permission(user, "change the allocation policy")
    reason = clean_reason(reason)
    if policy not in Experiment.Policy.values:
        raise ApplicationError("invalid_policy", f"policy must be one of {Experiment.Policy.values}.", field="policy")
    if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not math.isfinite(floor) or not 0 <= floor <= 0.5:
        raise ApplicationError("invalid_floor", "floor is a share between 0 and 0.5.", field="floor")
    if policy != Experiment.Policy.FIXED and floor < MIN_FLOOR:
        raise ApplicationError("invalid_floor", f"A policy needs a floor of at least {MIN_FLOOR}: an arm it sent to 0 "
                               "would never get traffic back.", field="floor")
    if isinstance(interval_minutes, bool) or not isinstance(interval_minutes, int) or not 1 <= interval_minutes <= 1440:
        raise ApplicationError("invalid_interval", "interval_minutes is a whole number from 1 to 1440.",
                               field="interval_minutes")
    if isinstance(guardrail_alpha, bool) or not isinstance(guardrail_alpha, (int, float)) \
            or not 0 < guardrail_alpha < 0.5:
        raise ApplicationError("invalid_alpha", "guardrail_alpha is between 0 and 0.5 (e.g. 0.01).",
                               field="guardrail_alpha")
    if primary_metric is not None and primary_metric not in METRICS:
        raise ApplicationError("invalid_primary_metric", f"primary_metric must be one of {list(METRICS)}.",
                               field="primary_metric")
    bounds = None if guardrail_bounds is None else _bounds_clean(guardrail_bounds)
    with transaction.atomic():
        experiment, arms = lock(experiment.id)
        live = [a for a in arms if a.status == Arm.Status.ACTIVE and a.weight > 0]
        if policy != Experiment.Policy.FIXED and live and floor * len(live) > 1:
            raise ApplicationError("invalid_floor", f"{len(live)} arms cannot each keep {floor:.0%}: the floor is at "
                                   f"most 1/{len(live)}.", field="floor")
        previous = {**experiment_state(experiment=experiment, arms=arms), **_settings_state(experiment)}
        experiment.policy, experiment.policy_floor = policy, float(floor)
        experiment.policy_interval_minutes = interval_minutes
        experiment.guardrails, experiment.guardrail_alpha = bool(guardrails), float(guardrail_alpha)
        experiment.primary_metric = primary_metric or experiment.primary_metric
        if bounds is not None:
            GuardrailBounds.objects.update_or_create(experiment=experiment, defaults=bounds.as_dict())
        running = experiment.status == Experiment.Status.RUNNING and policy != Experiment.Policy.FIXED
        experiment.policy_next_at = timezone.now() + timedelta(minutes=interval_minutes) if running else None
        if previous["policy"] == policy and all(previous[k] == v for k, v in _settings_state(experiment).items()):
            raise ApplicationError("no_change", "These are the settings already.", status=409)
        return commit_change(
            experiment=experiment, arms=arms, action=Decision.Action.POLICY, arm=None, user=user, reason=reason,
            previous_state=previous, evidence={"settings": _settings_state(experiment)}, period=NO_PERIOD,
            experiment_fields=("policy", "policy_floor", "policy_interval_minutes", "policy_next_at", "guardrails",
                               "guardrail_alpha", "primary_metric"),
        )


def _primary_inputs(experiment: Experiment, arms: list[Arm], inputs: StatsInputs):
    """Per arm the summaries of the primary metric, its periods and the counts that end the burn-in (clicks for CTR,
    purchasing users for the purchase metrics)."""
    if experiment.primary_metric == "ctr":
        return inputs.arms, inputs.periods, {name: s.sum_c for name, s in inputs.arms.items()}
    metric = outcome_metric_inputs(arms=arms, inputs=inputs)[experiment.primary_metric]
    return metric.arms, metric.periods, metric.events


def policy_evaluate(*, experiment_id: int, now: datetime | None = None) -> Decision | None:
    """One re-evaluation (module doc); returns the reallocation decision, or None when nothing changed."""
    now = now or timezone.now()
    with transaction.atomic():
        experiment, arms = lock(experiment_id)
        if experiment.status != Experiment.Status.RUNNING or experiment.policy == Experiment.Policy.FIXED:
            return None
        experiment.policy_next_at = now + timedelta(minutes=experiment.policy_interval_minutes)
        Experiment.objects.filter(pk=experiment.pk).update(policy_next_at=experiment.policy_next_at)
        live = [a for a in arms if a.status == Arm.Status.ACTIVE and a.weight > 0]
        if len(live) < 2:
            return None
        tick_services.rollup_fold(arm_ids=[a.id for a in arms])
        inputs = experiment_stats_inputs(experiment=experiment, arms=arms)
        pool, periods, events = _primary_inputs(experiment, arms, inputs)
        ranked = competitors({a.name: pool[a.name] for a in live}, periods).estimates
        ready = all(
            a.name in ranked and ranked[a.name].defined
            and bool(enough_data(events[a.name], pool[a.name].n_users))
            for a in live
        )
        if not ready:
            log.info("policy_burn_in experiment=%s", experiment.slug)
            return None
        means = [ranked[a.name].value for a in live]
        variances = [ranked[a.name].variance for a in live]
        seed = [experiment.id, experiment.allocation_epoch]
        before = np.array([a.weight for a in live]) / sum(a.weight for a in live)
        shares = policy_math.policy_step(before, means, variances, True, policy=experiment.policy,
                                         floor=experiment.policy_floor, rng=np.random.default_rng(seed))
        if np.array_equal(shares, before):
            log.info("policy_unchanged experiment=%s", experiment.slug)
            return None
        previous = experiment_state(experiment=experiment, arms=arms)
        for arm, share in zip(live, shares, strict=True):
            arm.weight = round(float(share), 4)
        split = ", ".join(f"{a.name} {b:.0%}→{s:.0%}" for a, b, s in zip(live, before, shares, strict=True))
        record = {
            "kind": experiment.policy, "floor": experiment.policy_floor, "seed": seed,
            "metric": experiment.primary_metric,
            "arms": {a.name: {"mean": m, "variance": v, "share_before": float(b), "share_after": float(s)}
                     for a, m, v, b, s in zip(live, means, variances, before, shares, strict=True)},
        }
        return commit_change(
            experiment=experiment, arms=arms, action=Decision.Action.REALLOCATE, arm=None, user=None,
            reason=f"{experiment.policy}: {split}", previous_state=previous,
            evidence={**evidence(experiment), "policy": record}, actor="policy",
            experiment_fields=("policy_next_at",),
        )


def policy_tick(*, now: datetime | None = None) -> dict[str, str]:
    """Re-evaluates every running experiment whose policy is due (beat); slug → "reallocated" / "unchanged"."""
    now = now or timezone.now()
    due = (
        Experiment.objects.filter(status=Experiment.Status.RUNNING)
        .exclude(policy=Experiment.Policy.FIXED)
        .filter(Q(policy_next_at__isnull=True) | Q(policy_next_at__lte=now))
        .values_list("id", "slug")
    )
    done: dict[str, str] = {}
    for exp_id, slug in due:
        try:
            done[slug] = "reallocated" if policy_evaluate(experiment_id=exp_id, now=now) else "unchanged"
        except Exception:
            # One experiment's failure must not stop the others' policies.
            log.exception("policy_evaluate_failed experiment=%s", slug)
            done[slug] = "failed"
    return done

