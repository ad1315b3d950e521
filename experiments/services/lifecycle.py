"""An experiment's life: create it, add arms, start it, stop it, and the rule for an arm's hyper-parameters.

Every step is an audited :class:`~experiments.models.Decision`, made by staff
with the promote_arm permission (checked here, so no interface can skip it).
The JSON API (``experiments/api/experiments.py``) and the dashboard's forms call
these same functions.

* **create** makes a *draft*: nothing is served until it starts.
* **add arm**: weight 0 makes a *candidate* (trains nothing, serves nobody until
  it gets a weight); an arm with a positive weight added to a running
  experiment takes new users at once, in a new allocation period.
* **start**: a draft (or stopped) experiment starts serving; its first period's
  weights are recorded.
* **stop** takes the experiment out of the race without a winner: every request
  is served by the control arm, in a period of its own (so the comparisons,
  stratified by period, leave it out), the assignments stay as they were and a
  start brings every returning user back to their own arm.
* **conclude** writes the operator's conclusion, kept with the results: after a
  promotion (the winner keeps serving everyone), or on a stopped experiment,
  which then ends with its control as the arm kept (it serves everyone already).
  A running experiment is promoted or stopped first; a conclusion can be
  rewritten later (each version is its own decision).
* **webhook**: where the experiment's notifications go (``services.webhooks``); setting, changing or removing it
  is audited (the secret itself is not written into the audit).
* **hyper-parameters are fixed once an arm has served or trained**
  (:func:`arm_params_update` refuses, saying what to do instead): a checkpoint
  carries the params it was trained with and would silently win over an edit,
  and the arm's statistics would mix two models. A new arm (a candidate at
  weight 0, then re-weighted) is the way to try other hyper-parameters.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from experiments.business_models import METRICS
from experiments.errors import ApplicationError
from experiments.models import Arm, Decision, Experiment, GuardrailBounds, Impression, ModelCheckpoint
from experiments.services import layers
from experiments.services.decision_core import (
    FIRST_PERIOD,
    NEW_PERIOD,
    NO_PERIOD,
    clean_reason,
    commit_change,
    evidence,
    experiment_state,
    lock,
    require_permission,
)
from experiments.services.holdouts import holdout_clean
from experiments.services.identifiers import ARM_NAME, names_check
from experiments.stats.serving_health import Bounds, BoundsError

# "ab": each user sees one arm; "interleaved": every slate team-drafts the serving arms (services/interleaved.py).
MODES = ("ab", "interleaved")
MAX_ARMS = 20
# Dashboard paths under /dashboard/ that an experiment slug must not shadow.
RESERVED_SLUGS = frozenset({"new"})
MAX_CONCLUSION = 10_000


@dataclass(frozen=True)
class ArmSpec:
    """An arm to create: its name, model kind, hyper-parameters (validated by the model registry) and weight."""

    name: Any
    kind: Any
    params: Any = field(default_factory=dict)
    weight: Any = 1.0


def _arm_spec_clean(spec: ArmSpec, prefix: str) -> ArmSpec:
    from models.registry import validate_params

    if not isinstance(spec.name, str) or not ARM_NAME.fullmatch(spec.name):
        raise ApplicationError("invalid_name", "An arm name is 1-100 letters, digits, '_', '-' or '.', starting with "
                               "a letter or digit.", field=f"{prefix}.name")
    if not isinstance(spec.kind, str) or not spec.kind:
        raise ApplicationError("required", "kind is required (a model kind, e.g. \"popularity\").", field=f"{prefix}.kind")
    try:
        params = validate_params(spec.kind, spec.params if spec.params is not None else {})
    except ValueError as exc:
        where = "kind" if str(exc).startswith("unknown arm kind") else "params"
        raise ApplicationError(f"invalid_{where}", str(exc), field=f"{prefix}.{where}") from None
    weight = spec.weight
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) \
            or not 0 <= weight <= 1e6:
        raise ApplicationError("invalid_weight", "weight must be a number between 0 and 1e6 (0 = a candidate).",
                               field=f"{prefix}.weight")
    return ArmSpec(spec.name, spec.kind, params, float(weight))


def _decision_reason(reason: str | None, default: str) -> str:
    return clean_reason(reason if reason is not None and str(reason).strip() else default)


def experiment_create(
    *, slug: str, name: str = "", arms: list[ArmSpec], control: str | None = None, mode: str = "ab", user,
    reason: str | None = None, salt: str | None = None, holdout: dict | None = None, layer: str | None = None,
    layer_share: float | None = None, primary_metric: str = "ctr", guardrail_bounds: dict | None = None,
) -> Experiment:
    """A draft experiment with its arms (all validated first: nothing is written unless everything is valid).

    ``salt`` (hashed with each user id into a bucket) is random unless given; it is fixed from here on.
    ``holdout`` (``{"arm", "share"}``) keeps that share of the users on that arm for the experiment's life
    (services/holdouts.py); the arm's weight is 0, since it takes no one else. ``layer`` places the experiment
    in a layer (services/layers.py) with ``layer_share`` of its buckets (default: its largest free range).
    ``primary_metric`` (ctr, conversion_rate, revenue_per_user) drives the promotion evidence, the policy and the
    guardrail; it can change later with the policy settings (``services.allocation.policy_set``), as can
    ``guardrail_bounds`` (serving bounds per arm, ``experiments.stats.serving_health.Bounds``; default: the defaults).
    """
    require_permission(user, "create experiments")
    names_check(slug=slug, name=name, salt=salt)
    if slug in RESERVED_SLUGS:
        raise ApplicationError("invalid_slug", f"{slug!r} is reserved by the dashboard; choose another slug.",
                               field="slug")
    if mode not in MODES:
        raise ApplicationError("invalid_mode", f"mode must be one of {list(MODES)}.", field="mode")
    if primary_metric not in METRICS:
        raise ApplicationError("invalid_primary_metric", f"primary_metric must be one of {list(METRICS)}.",
                               field="primary_metric")
    if len(arms) > MAX_ARMS:
        raise ApplicationError("too_many_arms", f"At most {MAX_ARMS} arms.", field="arms")
    cleaned = [_arm_spec_clean(spec, f"arms[{i}]") for i, spec in enumerate(arms)]
    names = [spec.name for spec in cleaned]
    for i, arm_name in enumerate(names):
        if arm_name in names[:i]:
            raise ApplicationError("duplicate", f"Arm name {arm_name!r} is used twice.", field=f"arms[{i}].name")
    if control is not None and control not in names:
        raise ApplicationError("unknown_arm", f"control {control!r} is not one of the arms {names}.", field="control")
    held = holdout_clean(holdout, arm_names=names, mode=mode)
    if layer is None and layer_share is not None:
        raise ApplicationError("required", "layer_share needs a layer.", field="layer")
    share = layers.layer_share_clean(layer_share)
    try:
        bounds = None if guardrail_bounds is None else Bounds.from_dict(guardrail_bounds)
    except BoundsError as exc:
        raise ApplicationError("invalid_bound", str(exc), field=exc.field) from None
    if held is not None:
        cleaned = [replace(s, weight=0.0) if s.name == held[0] else s for s in cleaned]
        if not any(s.weight > 0 for s in cleaned):
            raise ApplicationError("no_traffic", "An arm other than the holdout's must have a positive weight.",
                                   field="arms")
    reason = _decision_reason(reason, f"created {slug}")
    try:
        with transaction.atomic():
            experiment = Experiment.objects.create(slug=slug, name=name or slug, salt=salt or secrets.token_hex(8),
                                                   mode=mode, primary_metric=primary_metric)
            made = [Arm.objects.create(experiment=experiment, name=s.name, kind=s.kind, params=s.params,
                                       weight=s.weight) for s in cleaned]
            by_name = {a.name: a for a in made}
            if bounds is not None:
                GuardrailBounds.objects.create(experiment=experiment, **bounds.as_dict())
            experiment.control_arm = by_name.get(control) if control is not None else (made[0] if made else None)
            if held is not None:
                experiment.holdout_arm, experiment.holdout_share = by_name[held[0]], held[1]
            allocation = None if layer is None else layers.layer_allocate(experiment=experiment, layer_slug=layer,
                                                                          share=share)
            commit_change(
                experiment=experiment, arms=made, action=Decision.Action.CREATE, arm=None, user=user, reason=reason,
                previous_state={}, evidence={"arms": [asdict(s) for s in cleaned], "control": control, "mode": mode,
                                                  "primary_metric": primary_metric,
                                                  "guardrail_bounds": None if bounds is None else bounds.as_dict(),
                                                  "salt_given": salt is not None,
                                                  "holdout": {"arm": held[0], "share": held[1]} if held else None,
                                                  "layer": None if allocation is None else {
                                                      "slug": layer, "start": allocation.start,
                                                      "end": allocation.end}},
                period=NO_PERIOD, experiment_fields=("control_arm", "holdout_arm", "holdout_share"),
            )
    except IntegrityError:
        raise ApplicationError("experiment_exists", f"An experiment {slug!r} exists already.", status=409,
                               field="slug") from None
    return experiment


def arm_create(*, experiment: Experiment, spec: ArmSpec, user, reason: str | None = None) -> Arm:
    """Adds an arm; in a running experiment an arm with a positive weight opens a new period and takes new users."""
    require_permission(user)
    spec = _arm_spec_clean(spec, "arm")
    reason = _decision_reason(reason, f"added arm {spec.name}")
    with transaction.atomic():
        experiment, arms = lock(experiment.id)
        if experiment.status == Experiment.Status.CONCLUDED:
            raise ApplicationError("concluded", "The experiment is concluded; roll the promotion back to add arms.",
                                   status=409)
        if len(arms) >= MAX_ARMS:
            raise ApplicationError("too_many_arms", f"At most {MAX_ARMS} arms.", status=409)
        if any(a.name == spec.name for a in arms):
            raise ApplicationError("arm_exists", f"The experiment has an arm {spec.name!r} already.", status=409,
                                   field="name")
        previous = experiment_state(experiment=experiment, arms=arms)
        stats = evidence(experiment) if experiment.status != Experiment.Status.DRAFT else {}
        arm = Arm.objects.create(experiment=experiment, name=spec.name, kind=spec.kind, params=spec.params,
                                 weight=spec.weight)
        arms.append(arm)
        if experiment.control_arm_id is None:
            experiment.control_arm = arm
        new_users = experiment.status == Experiment.Status.RUNNING and spec.weight > 0
        commit_change(
            experiment=experiment, arms=arms, action=Decision.Action.ARM_ADD, arm=arm, user=user, reason=reason,
            previous_state=previous, evidence={**stats, "params": spec.params},
            period=NEW_PERIOD if new_users else NO_PERIOD, experiment_fields=("control_arm",),
        )
    return arm


def experiment_start(*, experiment: Experiment, user, reason: str | None = None, actor: str | None = None) -> Decision:
    """Draft or stopped → running. A stopped experiment's returning users go back to their own arms.

    ``user=None`` with an ``actor`` is the system (a schedule, services/schedules.py): no permission to check."""
    if not (user is None and actor):
        require_permission(user, "start experiments")
    reason = _decision_reason(reason, "started")
    with transaction.atomic():
        experiment, arms = lock(experiment.id)
        if experiment.status == Experiment.Status.RUNNING:
            raise ApplicationError("already_running", "The experiment is running already.", status=409)
        if experiment.status == Experiment.Status.CONCLUDED:
            raise ApplicationError("concluded", "The experiment is concluded; roll the promotion back to run it "
                                   "again.", status=409)
        if not arms:
            raise ApplicationError("no_arms", "Add an arm before starting the experiment.", status=409)
        first = experiment.status == Experiment.Status.DRAFT
        previous = experiment_state(experiment=experiment, arms=arms)
        stats = {} if first else evidence(experiment)
        experiment.status = Experiment.Status.RUNNING
        fields: tuple[str, ...] = ()
        if first:
            experiment.started_at = timezone.now()
            fields = ("started_at",)
        if experiment.policy != Experiment.Policy.FIXED:
            experiment.policy_next_at = timezone.now() + timedelta(minutes=experiment.policy_interval_minutes)
            fields = (*fields, "policy_next_at")
        return commit_change(
            experiment=experiment, arms=arms, action=Decision.Action.START, arm=None, user=user, reason=reason,
            previous_state=previous, evidence=stats, period=FIRST_PERIOD if first else NEW_PERIOD,
            experiment_fields=fields, actor=actor,
        )


def experiment_stop(*, experiment: Experiment, user, reason: str | None = None, actor: str | None = None,
                    extra_evidence: dict | None = None) -> Decision:
    """Running → stopped: the control arm serves everyone, without a winner (module doc). ``user=None`` with an
    ``actor`` is the system, as for :func:`experiment_start`."""
    if not (user is None and actor):
        require_permission(user, "stop experiments")
    reason = _decision_reason(reason, "stopped")
    with transaction.atomic():
        experiment, arms = lock(experiment.id)
        if experiment.status != Experiment.Status.RUNNING:
            raise ApplicationError("not_running", f"Only a running experiment can be stopped; it is {experiment.status}.",
                                   status=409)
        control = next((a for a in arms if a.id == experiment.control_arm_id), None)
        if control is None or control.status != Arm.Status.ACTIVE:
            raise ApplicationError("control_not_active", "A stopped experiment serves its control arm: set an active "
                                   "control first.", status=409)
        previous = experiment_state(experiment=experiment, arms=arms)
        stats = {**evidence(experiment), **(extra_evidence or {})}
        experiment.status = Experiment.Status.STOPPED
        return commit_change(
            experiment=experiment, arms=arms, action=Decision.Action.STOP, arm=control, user=user, reason=reason,
            previous_state=previous, evidence=stats, actor=actor,
        )


def arm_params_update(*, arm: Arm, params: dict[str, Any], user, reason: str) -> Arm:
    """New hyper-parameters for an arm that has neither served nor trained; refused (409) otherwise."""
    require_permission(user, "change an arm's hyper-parameters")
    reason = clean_reason(reason)
    from models.registry import validate_params

    try:
        params = validate_params(arm.kind, params)
    except ValueError as exc:
        raise ApplicationError("invalid_params", str(exc), field="params") from None
    with transaction.atomic():
        experiment, arms = lock(arm.experiment_id)
        target = next(a for a in arms if a.id == arm.id)
        versions = ModelCheckpoint.objects.filter(arm=target).count()
        served = Impression.objects.filter(arm=target).exists()
        if versions or served:
            raise ApplicationError(
                "params_locked",
                f"Arm {target.name!r} has {'trained model versions' if versions else 'served traffic'}: its "
                "hyper-parameters are fixed, because its checkpoints carry the params they were trained with and its "
                "statistics would mix two models. Add a new arm with these params (weight 0 makes it a candidate) "
                "and move traffic to it.",
                status=409, field="params",
            )
        if target.params == params:
            raise ApplicationError("no_change", "These are the arm's params already.", status=409, field="params")
        previous = {**experiment_state(experiment=experiment, arms=arms), "params": target.params}
        target.params = params
        target.save(update_fields=["params"])
        commit_change(
            experiment=experiment, arms=arms, action=Decision.Action.PARAMS, arm=target, user=user, reason=reason,
            previous_state=previous, evidence={"params": params}, period=NO_PERIOD,
        )
    return target


def experiment_conclude(*, experiment: Experiment, conclusion: str, user) -> Decision:
    """Records the written conclusion (module doc): after a promotion, or ending a stopped experiment on its control."""
    require_permission(user, "conclude experiments")
    conclusion = (conclusion or "").strip() if isinstance(conclusion, str) else conclusion
    if not isinstance(conclusion, str) or not conclusion:
        raise ApplicationError("conclusion_required", "Write the conclusion: what was learnt and what ships.",
                               field="conclusion")
    if len(conclusion) > MAX_CONCLUSION:
        raise ApplicationError("conclusion_too_long", f"A conclusion has at most {MAX_CONCLUSION} characters.",
                               field="conclusion")
    with transaction.atomic():
        experiment, arms = lock(experiment.id)
        if experiment.status in (Experiment.Status.DRAFT, Experiment.Status.RUNNING):
            raise ApplicationError(
                "not_concludable", f"The experiment is {experiment.status}: promote the winning arm (or stop the "
                "experiment to keep its control) before writing the conclusion.", status=409)
        previous = {**experiment_state(experiment=experiment, arms=arms), "conclusion": experiment.conclusion}
        kept = None
        if experiment.status == Experiment.Status.STOPPED:
            kept = next((a for a in arms if a.id == experiment.control_arm_id), None)
            if kept is None:
                raise ApplicationError("control_not_active", "A stopped experiment concludes on its control arm: it "
                                       "has none.", status=409)
            experiment.winner = kept
            experiment.status = Experiment.Status.CONCLUDED
            experiment.concluded_at = timezone.now()
        winner = kept or next((a for a in arms if a.id == experiment.winner_id), None)
        experiment.conclusion = conclusion
        return commit_change(
            experiment=experiment, arms=arms, action=Decision.Action.CONCLUDE, arm=winner, user=user,
            reason=conclusion[:2000], previous_state=previous,
            evidence={**evidence(experiment), "conclusion": conclusion},
            period=NO_PERIOD, experiment_fields=("conclusion",),
        )


def experiment_webhook_set(*, experiment: Experiment, url: str, secret: str | None = None, user,
                           reason: str | None = None) -> Decision:
    """Sets (or, with an empty ``url``, removes) the experiment's webhook; a new secret is made unless given."""
    from urllib.parse import urlsplit

    from experiments.models import WebhookEndpoint

    require_permission(user, "set webhooks")
    url = (url or "").strip() if isinstance(url, str) else url
    if not isinstance(url, str) or len(url) > 500:
        raise ApplicationError("invalid_url", "url is a text of at most 500 characters.", field="url")
    parts = urlsplit(url)
    if url and (parts.scheme not in ("http", "https") or not parts.hostname):
        raise ApplicationError("invalid_url", "The webhook is an http:// or https:// URL (for Slack, its incoming "
                               "webhook URL).", field="url")
    if secret is not None and (not isinstance(secret, str) or not 16 <= len(secret) <= 128):
        raise ApplicationError("invalid_secret", "A signing secret is 16-128 characters (leave it out for a random "
                               "one).", field="secret")
    with transaction.atomic():
        experiment, arms = lock(experiment.id)
        current = WebhookEndpoint.objects.filter(experiment=experiment).first()
        previous = {**experiment_state(experiment=experiment, arms=arms), "webhook": current.url if current else None}
        if url:
            keep = current.secret if current is not None else secrets.token_urlsafe(32)
            WebhookEndpoint.objects.update_or_create(experiment=experiment,
                                                     defaults={"url": url, "secret": secret or keep})
        elif current is not None:
            current.delete()
        return commit_change(
            experiment=experiment, arms=arms, action=Decision.Action.WEBHOOK, arm=None, user=user,
            reason=_decision_reason(reason, f"webhook {'set to ' + url if url else 'removed'}"),
            previous_state=previous, evidence={"webhook": url or None, "secret_changed": secret is not None},
            period=NO_PERIOD,
        )
