"""Experiment endpoints of the API: live results, and the operator's actions as JSON (staff only).

Each action is the JSON twin of a dashboard button: the same service
(``services.lifecycle``, ``services.decisions``), the same permission check
(inside the service), the same audited ``Decision``. Authentication and the
error shape are :func:`experiments.api.auth.operator_view`'s: a session with
CSRF, or ``Authorization: Bearer <staff token>``. Views only translate JSON.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

from experiments.api import validation as v
from experiments.api.auth import operator_view
from experiments.errors import ApplicationError
from experiments.models import Arm, Decision, Experiment
from experiments.selectors import experiments as experiment_selectors
from experiments.selectors import results as result_selectors
from experiments.services import decisions as decision_services
from experiments.services import lifecycle

log = logging.getLogger(__name__)


def _experiment(slug: str) -> Experiment:
    experiment = Experiment.objects.filter(slug=slug).first()
    if experiment is None:
        raise ApplicationError("experiment_not_found", f"no experiment {slug!r}", status=404)
    return experiment


def _arm(experiment: Experiment, name: str, field: str | None = "arm") -> Arm:
    arm = Arm.objects.filter(experiment=experiment, name=name).first()
    if arm is None:
        raise ApplicationError("arm_not_found", f"experiment {experiment.slug!r} has no arm {name!r}", status=404,
                               field=field)
    return arm


def _reason(body: dict[str, Any]) -> str | None:
    return v.text(body.get("reason"), "reason", max_length=decision_services.MAX_REASON, default=None)


def _decision_response(decision: Decision, experiment: Experiment, user, status: int = 200) -> JsonResponse:
    experiment.refresh_from_db()
    return JsonResponse(
        {
            "decision": experiment_selectors.decision_summary(decision, user_name=user.get_username()),
            "experiment": experiment_selectors.experiment_summary(experiment=experiment),
        },
        status=status,
    )


def _arm_spec(value: Any, field: str) -> lifecycle.ArmSpec:
    if not isinstance(value, dict):
        raise ApplicationError("invalid_type", f"{field} must be an object", field=field)
    weight = value.get("weight", 1.0)
    return lifecycle.ArmSpec(
        name=v.identifier(value.get("name"), f"{field}.name"),
        kind=v.identifier(value.get("kind"), f"{field}.kind"),
        params=v.json_object(value.get("params"), f"{field}.params"),
        weight=1.0 if weight is None else v.number(weight, f"{field}.weight", lo=0, hi=1e6),
    )


# ----------------------------------------------------------------------------- reads


@operator_view(methods=["GET"], staff=False)
def experiment_stats(request: HttpRequest, user, body: dict, slug: str) -> HttpResponse:
    experiment = _experiment(slug)
    payload = result_selectors.experiment_payload_current(experiment=experiment)
    return JsonResponse(result_selectors.results(payload))


@operator_view(methods=["GET", "POST"])
def experiments(request: HttpRequest, user, body: dict) -> HttpResponse:
    """GET: every experiment with status, arms and leader. POST: create a draft experiment with its arms."""
    if request.method == "GET":
        return JsonResponse({"experiments": experiment_selectors.experiment_summaries()})
    arms = body.get("arms", [])
    if not isinstance(arms, list):
        raise ApplicationError("invalid_type", "arms must be a list of arm objects", field="arms")
    control = body.get("control")
    experiment = lifecycle.experiment_create(
        slug=v.identifier(body.get("slug"), "slug"),
        name=v.text(body.get("name"), "name", max_length=200),
        mode="ab" if body.get("mode") is None else v.identifier(body["mode"], "mode"),
        arms=[_arm_spec(arm, f"arms[{i}]") for i, arm in enumerate(arms)],
        control=None if control is None else v.identifier(control, "control"),
        salt=None if body.get("salt") is None else v.text(body["salt"], "salt", max_length=64),
        holdout=body.get("holdout"),
        primary_metric="ctr" if body.get("primary_metric") is None else v.identifier(body["primary_metric"],
                                                                                       "primary_metric"),
        layer=None if body.get("layer") is None else v.identifier(body["layer"], "layer"),
        guardrail_bounds=body.get("guardrail_bounds"),
        layer_share=None if body.get("layer_share") is None else v.number(body["layer_share"], "layer_share", lo=0,
                                                                           hi=1),
        user=user,
        reason=_reason(body),
    )
    return JsonResponse(experiment_selectors.experiment_summary(experiment=experiment), status=201)


@operator_view(methods=["GET", "POST"])
def layers(request: HttpRequest, user, body: dict) -> HttpResponse:
    """GET: every layer with its experiments' ranges and its free ranges. POST: make a layer."""
    from experiments.selectors.layers import layer_summaries, layer_summary
    from experiments.services.layers import layer_create

    if request.method == "GET":
        return JsonResponse({"layers": layer_summaries()})
    layer = layer_create(slug=v.identifier(body.get("slug"), "slug"), name=v.text(body.get("name"), "name",
                         max_length=200), salt=None if body.get("salt") is None else v.text(body["salt"], "salt",
                                                                                             max_length=64), user=user)
    log.info("layer_created layer=%s user=%s", layer.slug, user.get_username())
    return JsonResponse(layer_summary(layer, []), status=201)


# ----------------------------------------------------------------------------- actions


@operator_view(methods=["POST"])
def experiment_arms(request: HttpRequest, user, body: dict, slug: str) -> HttpResponse:
    experiment = _experiment(slug)
    spec = _arm_spec(body, "arm")
    shadow = body.get("shadow", False)
    if not isinstance(shadow, bool):
        raise ApplicationError("invalid_type", "shadow must be true or false", field="shadow")
    if shadow and body.get("weight") not in (None, 0):
        raise ApplicationError("invalid_weight", "a shadow arm is shown to nobody: leave its weight 0",
                               field="weight")
    if shadow:
        spec = lifecycle.ArmSpec(spec.name, spec.kind, spec.params, 0.0)
    arm = lifecycle.arm_create(experiment=experiment, spec=spec, user=user, reason=_reason(body))
    if shadow:
        decision_services.arm_shadow(arm=arm, user=user, reason=_reason(body) or "added as a shadow arm")
    experiment.refresh_from_db()
    summary = experiment_selectors.experiment_summary(experiment=experiment)
    return JsonResponse({"arm": next(a for a in summary["arms"] if a["name"] == arm.name), "experiment": summary},
                        status=201)


@operator_view(methods=["POST"])
def experiment_start(request: HttpRequest, user, body: dict, slug: str) -> HttpResponse:
    experiment = _experiment(slug)
    decision = lifecycle.experiment_start(experiment=experiment, user=user, reason=_reason(body))
    return _decision_response(decision, experiment, user)


@operator_view(methods=["POST"])
def experiment_stop(request: HttpRequest, user, body: dict, slug: str) -> HttpResponse:
    experiment = _experiment(slug)
    decision = lifecycle.experiment_stop(experiment=experiment, user=user, reason=_reason(body))
    return _decision_response(decision, experiment, user)


@operator_view(methods=["POST"])
def experiment_conclude(request: HttpRequest, user, body: dict, slug: str) -> HttpResponse:
    experiment = _experiment(slug)
    conclusion = v.text(body.get("conclusion"), "conclusion", max_length=lifecycle.MAX_CONCLUSION)
    decision = lifecycle.experiment_conclude(experiment=experiment, conclusion=conclusion, user=user)
    return _decision_response(decision, experiment, user)


@operator_view(methods=["POST"])
def experiment_webhook(request: HttpRequest, user, body: dict, slug: str) -> HttpResponse:
    """Set (or, with an empty url, remove) the experiment's webhook; answers with its signing secret."""
    from experiments.models import WebhookEndpoint

    experiment = _experiment(slug)
    if "url" not in body:
        raise ApplicationError("required", "url is required (an empty string removes the webhook)", field="url")
    secret = body.get("secret")
    decision = lifecycle.experiment_webhook_set(
        experiment=experiment, url=v.text(body["url"], "url", max_length=500, default=None),
        secret=None if secret is None else v.text(secret, "secret", max_length=128), user=user, reason=_reason(body))
    endpoint = WebhookEndpoint.objects.filter(experiment=experiment).first()
    response = _decision_response(decision, experiment, user)
    data = json.loads(response.content)
    data["webhook"] = None if endpoint is None else {"url": endpoint.url, "secret": endpoint.secret}
    return JsonResponse(data)


@operator_view(methods=["POST"])
def experiment_weights(request: HttpRequest, user, body: dict, slug: str) -> HttpResponse:
    experiment = _experiment(slug)
    weights = body.get("weights")
    if weights is None:
        raise ApplicationError("required", "weights is required: {\"<arm>\": number}", field="weights")
    if not isinstance(weights, dict) or not weights:
        raise ApplicationError("invalid_type", "weights must be a non-empty object {\"<arm>\": number}", field="weights")
    cleaned = {name: v.number(w, f"weights.{name}", lo=0, hi=1e6) for name, w in weights.items()}
    if any(w is None for w in cleaned.values()):
        raise ApplicationError("invalid_type", "every weight must be a number", field="weights")
    decision = decision_services.experiment_reweight(
        experiment=experiment, weights=cleaned, user=user, reason=_reason(body) or "weights set through the API",
    )
    return _decision_response(decision, experiment, user)


@operator_view(methods=["POST"])
def experiment_holdout(request: HttpRequest, user, body: dict, slug: str) -> HttpResponse:
    """Set a draft experiment's holdout: ``share`` of its users on ``arm`` for its whole life; audited."""
    from experiments.services.holdouts import holdout_set

    experiment = _experiment(slug)
    decision = holdout_set(experiment=experiment, arm=v.identifier(body.get("arm"), "arm"), share=body.get("share"),
                           user=user, reason=_reason(body))
    return _decision_response(decision, experiment, user)


@operator_view(methods=["POST"])
def experiment_holdout_end(request: HttpRequest, user, body: dict, slug: str) -> HttpResponse:
    """End the holdout: its users move to the live arms (or the winner); audited, a new period."""
    from experiments.services.holdouts import holdout_end

    experiment = _experiment(slug)
    decision = holdout_end(experiment=experiment, user=user, reason=_reason(body) or "holdout ended through the API")
    return _decision_response(decision, experiment, user)


def _arm_decision(service, user, body: dict, slug: str, arm: str, default_reason: str) -> HttpResponse:
    experiment = _experiment(slug)
    decision = service(arm=_arm(experiment, arm, field=None), user=user, reason=_reason(body) or default_reason)
    return _decision_response(decision, experiment, user)


@operator_view(methods=["POST"])
def arm_pause(request: HttpRequest, user, body: dict, slug: str, arm: str) -> HttpResponse:
    return _arm_decision(decision_services.arm_pause, user, body, slug, arm, "paused through the API")


@operator_view(methods=["POST"])
def arm_shadow(request: HttpRequest, user, body: dict, slug: str, arm: str) -> HttpResponse:
    return _arm_decision(decision_services.arm_shadow, user, body, slug, arm, "into the shadow through the API")


@operator_view(methods=["POST"])
def arm_resume(request: HttpRequest, user, body: dict, slug: str, arm: str) -> HttpResponse:
    return _arm_decision(decision_services.arm_resume, user, body, slug, arm, "resumed through the API")


@operator_view(methods=["POST"])
def arm_evaluate(request: HttpRequest, user, body: dict, slug: str, arm: str) -> HttpResponse:
    """Queue a candidate's offline evaluation (a Celery job); its progress arrives on the dashboard's WebSocket."""
    from experiments.offline.candidates import DEFAULT_BOOTSTRAP, candidate_evaluation_request

    experiment = _experiment(slug)
    target = _arm(experiment, arm, field=None)
    n_bootstrap = body.get("n_bootstrap")
    logging_arms = body.get("logging_arms")
    if logging_arms is not None and (not isinstance(logging_arms, list) or not logging_arms):
        raise ApplicationError("invalid_type", "logging_arms must be a non-empty list of arm names",
                               field="logging_arms")
    job = candidate_evaluation_request(
        experiment=experiment, arm=target, user=user,
        n_bootstrap=DEFAULT_BOOTSTRAP if n_bootstrap is None else v.integer(n_bootstrap, "n_bootstrap", lo=2, hi=5000),
        logging_arms=None if logging_arms is None else [v.identifier(a, f"logging_arms[{i}]")
                                                         for i, a in enumerate(logging_arms)],
    )
    return JsonResponse({"job": job, "arm": target.name, "experiment": experiment.slug, "state": "queued"}, status=202)


@operator_view(methods=["POST"])
def experiment_promote(request: HttpRequest, user, body: dict, slug: str) -> HttpResponse:
    experiment = _experiment(slug)
    arm_name = v.identifier(body.get("arm"), "arm")
    reason = v.text(body.get("reason"), "reason", max_length=decision_services.MAX_REASON)
    arm = _arm(experiment, arm_name)
    decision = decision_services.arm_promote(experiment=experiment, arm=arm, user=user, reason=reason)
    experiment.refresh_from_db()
    return JsonResponse(
        {
            "decision": experiment_selectors.decision_summary(decision, user_name=user.get_username()),
            "experiment": {"slug": experiment.slug, "status": experiment.status, "winner": arm.name},
        },
        status=201,
    )
