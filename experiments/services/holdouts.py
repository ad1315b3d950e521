"""Holdouts: a fixed share of an experiment's users stays on a baseline arm for the experiment's whole life.

The share is set when the experiment is made (:func:`holdout_clean` validates it for
:func:`experiments.services.lifecycle.experiment_create`), or later while it is a draft
(:func:`holdout_set`); a third hash of (salt, user)
decides who is held out (:mod:`experiments.services.assignment`). The baseline arm is an arm
like the others in the statistics, so the holdout's numbers are reported like an arm's, but it
takes no one outside the holdout, and it is not paused, re-weighted or promoted while the
holdout runs. A promotion keeps the holdout; only :func:`holdout_end` (an audited decision,
opening a new period) releases its users, who then move as from a paused arm.
"""

from __future__ import annotations

import math
from typing import Any

from django.db import transaction
from django.utils import timezone

from experiments.errors import ApplicationError
from experiments.models import Decision, Experiment
from experiments.services.decision_core import (
    NO_PERIOD,
    arm_of,
    clean_reason,
    commit_change,
    evidence,
    experiment_state,
    lock,
    require_permission,
)

MAX_SHARE = 0.5


def holdout_clean(holdout: Any, *, arm_names: list[str], mode: str) -> tuple[str, float] | None:
    """``(arm name, share)`` of a creation request's ``"holdout": {"arm", "share"}``, or None for no holdout."""
    if holdout is None:
        return None
    if not isinstance(holdout, dict):
        raise ApplicationError("invalid_holdout", 'holdout is an object {"arm": "<arm name>", "share": 0.1}.',
                               field="holdout")
    unknown = sorted(set(holdout) - {"arm", "share"})
    if unknown:
        raise ApplicationError("unknown_field", f"Unknown holdout field {unknown[0]!r}.", field=f"holdout.{unknown[0]}")
    if mode != Experiment.Mode.AB:
        raise ApplicationError("invalid_holdout", "Holdouts apply to A/B experiments: an interleaved slate mixes "
                               "every arm.", field="holdout")
    arm = holdout.get("arm")
    if arm not in arm_names:
        raise ApplicationError("unknown_arm", f"holdout.arm {arm!r} is not one of the arms {arm_names}.",
                               field="holdout.arm")
    share = holdout.get("share")
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not math.isfinite(share) \
            or not 0 < share <= MAX_SHARE:
        raise ApplicationError("invalid_share", f"holdout.share is a fraction of the users in (0, {MAX_SHARE}].",
                               field="holdout.share")
    if len(arm_names) < 2:
        raise ApplicationError("invalid_holdout", "A holdout needs at least one other arm to take the other users.",
                               field="holdout")
    return arm, float(share)


def holdout_set(*, experiment: Experiment, arm: Any, share: Any, user, reason: str | None = None) -> Decision:
    """Sets (or replaces) a draft experiment's holdout: ``share`` of its users on ``arm``, whose weight becomes 0."""
    require_permission(user)
    with transaction.atomic():
        experiment, arms = lock(experiment.id)
        if experiment.status != Experiment.Status.DRAFT:
            raise ApplicationError("not_draft", "A holdout is set before the start: it must cover the experiment's "
                                   "whole life.", status=409)
        name, share = holdout_clean({"arm": arm, "share": share}, arm_names=[a.name for a in arms],
                                    mode=experiment.mode)
        baseline = next(a for a in arms if a.name == name)
        if not any(a.weight > 0 for a in arms if a is not baseline):
            raise ApplicationError("no_traffic", "Another arm must keep a positive weight to take the other users.",
                                   status=409, field="holdout.arm")
        previous = experiment_state(experiment=experiment, arms=arms)
        baseline.weight = 0.0
        experiment.holdout_arm, experiment.holdout_share, experiment.holdout_ended_at = baseline, share, None
        return commit_change(
            experiment=experiment, arms=arms, action=Decision.Action.HOLDOUT, arm=baseline, user=user,
            reason=clean_reason(reason or f"hold out {share:.0%} on {name}"), previous_state=previous,
            evidence={"holdout": {"arm": name, "share": share}}, period=NO_PERIOD,
            experiment_fields=("holdout_arm", "holdout_share", "holdout_ended_at"),
        )


def holdout_end(*, experiment: Experiment, user, reason: str) -> Decision:
    """Ends the holdout: its users move to the live arms (or the winner) from the next request on."""
    require_permission(user)
    reason = clean_reason(reason)
    with transaction.atomic():
        experiment, arms = lock(experiment.id)
        if not experiment.holdout_running:
            raise ApplicationError("no_holdout", f"Experiment {experiment.slug!r} has no running holdout.", status=409)
        baseline = arm_of(arms, experiment.holdout_arm_id)
        previous = experiment_state(experiment=experiment, arms=arms)
        stats = evidence(experiment) if experiment.status != Experiment.Status.DRAFT else {}
        experiment.holdout_ended_at = timezone.now()
        return commit_change(
            experiment=experiment, arms=arms, action=Decision.Action.HOLDOUT_END, arm=baseline, user=user,
            reason=reason, previous_state=previous, evidence=stats, experiment_fields=("holdout_ended_at",),
        )
