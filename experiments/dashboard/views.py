"""Dashboard pages: live experiment view, confirmation pages for traffic decisions, audit log, exports.

Thin: reads come from ``selectors.results`` and ``selectors.dashboard``, writes go through ``services.decisions``
(which checks the promote_arm permission again, so no page can skip it).
"""

from __future__ import annotations

import csv
import json

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from experiments.api.errors import application_error_response
from experiments.csv_cells import csv_cell
from experiments.dashboard.common import can_decide, form_submit, require_decider
from experiments.dashboard.forms import DecisionForm, ModelRollbackForm, PlanForm, PolicyForm, ReweightForm
from experiments.dashboard.workbench import candidates_context
from experiments.errors import ApplicationError
from experiments.models import Arm, Decision, Experiment
from experiments.selectors import dashboard as dashboard_selectors
from experiments.selectors import interleaving as interleaving_selectors
from experiments.selectors import planning as planning_selectors
from experiments.selectors import policy as policy_selectors
from experiments.selectors import results as result_selectors
from experiments.selectors import training as training_selectors
from experiments.selectors.arm_health import bounds_of, window_minutes
from experiments.selectors.layers import allocation_of, allocation_summary
from experiments.services import allocation as allocation_services
from experiments.services import decisions as decision_services
from experiments.stats.serving_health import Bounds

ARM_ACTIONS = {
    "promote": ("Promote", decision_services.arm_promote),
    "pause": ("Pause", decision_services.arm_pause),
    "resume": ("Resume", decision_services.arm_resume),
    "reweight": ("Re-weight", decision_services.arm_reweight),
    "shadow": ("Shadow", decision_services.arm_shadow),
}


@login_required
def experiment_list(request: HttpRequest) -> HttpResponse:
    experiments = dashboard_selectors.experiments_for_dashboard()
    if len(experiments) == 1 and "all" not in request.GET:
        return redirect("dashboard:detail", slug=experiments[0].slug)
    return render(request, "dashboard/list.html", {"experiments": experiments, "can_decide": can_decide(request.user)})


@login_required
def experiment_detail(request: HttpRequest, slug: str) -> HttpResponse:
    experiment = get_object_or_404(Experiment, slug=slug)
    arms = result_selectors.experiment_arms(experiment=experiment)
    allowed = can_decide(request.user)
    config = {
        "slug": experiment.slug,
        "wsPath": f"/ws/experiments/{experiment.slug}/",
        "canDecide": allowed,
        "armActionUrl": reverse("dashboard:arm_decide", args=[experiment.slug, 0, "ACTION"]),
        "armIds": {arm.name: arm.id for arm in arms},
    }
    plan_form = PlanForm(request.GET if "mde" in request.GET else None)
    plan = (planning_selectors.experiment_plan_current(experiment=experiment, **plan_form.values())
            if experiment.status != Experiment.Status.DRAFT else None)
    config["candidatesUrl"] = reverse("dashboard:candidates", args=[experiment.slug])
    config["holdoutUrl"] = reverse("dashboard:holdout", args=[experiment.slug])
    config["evaluateUrl"] = f"/api/v1/experiments/{experiment.slug}/arms/ARM/evaluate"
    return render(
        request,
        "dashboard/detail.html",
        {"experiment": experiment, "arms": arms, "can_decide": allowed, "config": config, "plan_form": plan_form,
         "plan": plan, "layer": allocation_summary(allocation_of(experiment)),
         "guardrail_window_minutes": window_minutes(), **candidates_context(experiment, request.user)},
    )


@login_required
def audit(request: HttpRequest, slug: str) -> HttpResponse:
    experiment = get_object_or_404(Experiment, slug=slug)
    decisions = list(Decision.objects.filter(experiment=experiment).select_related("user", "arm"))
    rows = []
    for d in decisions:
        snap = d.stats_snapshot or {}
        arm_row = (snap.get("report", {}).get("arms", {}) or {}).get(d.arm.name) if d.arm else None
        rows.append({"decision": d, "arm_row": arm_row, "srm": (snap.get("report", {}).get("srm") or {}).get("alert"),
                     "by": policy_selectors.decision_actor(d),
                     "reversible": d.action in decision_services.REVERSIBLE and "arms" in (d.previous_state or {})})
    deliveries = list(experiment.webhook_deliveries.all()[:100])
    return render(
        request,
        "dashboard/audit.html",
        {"experiment": experiment, "rows": rows, "can_decide": can_decide(request.user), "deliveries": deliveries},
    )


def _export_payload(experiment: Experiment) -> dict | HttpResponse:
    try:
        return result_selectors.experiment_payload_current(experiment=experiment)
    except ApplicationError as exc:  # e.g. an experiment with no arms yet: a 409 that says so, not a 500
        return application_error_response(exc)


@login_required
def export_json(request: HttpRequest, slug: str) -> HttpResponse:
    experiment = get_object_or_404(Experiment, slug=slug)
    payload = _export_payload(experiment)
    if isinstance(payload, HttpResponse):
        return payload
    response = JsonResponse(result_selectors.results(payload), json_dumps_params={"indent": 2})
    response["Content-Disposition"] = f'attachment; filename="{slug}-results.json"'
    return response


@login_required
def export_csv(request: HttpRequest, slug: str) -> HttpResponse:
    experiment = get_object_or_404(Experiment, slug=slug)
    payload = _export_payload(experiment)
    if isinstance(payload, HttpResponse):
        return payload
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{slug}-results.csv"'
    pairs = interleaving_selectors.pair_rows(payload.get("interleaving"))
    # An interleaved experiment's file has the per-pair preference too: one row per pair after the arms,
    # with its first arm in "arm" and the pair's columns (empty on the arm rows).
    extra = [f for f in interleaving_selectors.PAIR_FIELDS if f not in result_selectors.RESULT_FIELDS] if pairs else []
    writer = csv.DictWriter(response, fieldnames=["computed_at", *result_selectors.RESULT_FIELDS, *extra])
    writer.writeheader()
    for row in [*result_selectors.results_rows(payload), *pairs]:
        writer.writerow({"computed_at": payload["computed_at"], **{k: csv_cell(v) for k, v in row.items()}})
    return response


@login_required
@require_http_methods(["GET", "POST"])
def arm_decide(request: HttpRequest, slug: str, arm_id: int, action: str) -> HttpResponse:
    """GET: the confirmation page with the current numbers; POST: the decision itself."""
    require_decider(request)
    if action not in ARM_ACTIONS:
        return HttpResponse(status=404)
    experiment = get_object_or_404(Experiment, slug=slug)
    arm = get_object_or_404(Arm, pk=arm_id, experiment=experiment)
    label, service = ARM_ACTIONS[action]
    form_class = ReweightForm if action == "reweight" else DecisionForm
    form = form_class(request.POST or None, initial={"weight": arm.weight})

    def decide(data: dict) -> str:
        kwargs = {"weight": data["weight"]} if action == "reweight" else {}
        decision = (
            service(experiment=experiment, arm=arm, user=request.user, reason=data["reason"])
            if action == "promote"
            else service(arm=arm, user=request.user, reason=data["reason"], **kwargs)
        )
        return f"{label} {arm.name}: recorded as decision #{decision.id}."

    done, status = form_submit(request, form, decide)
    if done:
        return redirect("dashboard:detail", slug=experiment.slug)
    payload = result_selectors.experiment_payload_current(experiment=experiment)
    evidence = result_selectors.arm_evidence(payload, arm.name)
    context = {
        "experiment": experiment,
        "arm": arm,
        "action": action,
        "label": label,
        "form": form,
        "evidence": evidence,
        "show_weak": action == "promote",
    }
    return render(request, "dashboard/confirm.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def decision_rollback(request: HttpRequest, slug: str, decision_id: int) -> HttpResponse:
    require_decider(request)
    decision = get_object_or_404(Decision, pk=decision_id, experiment__slug=slug)
    form = DecisionForm(request.POST or None, initial={"reason": f"Roll back decision #{decision.id}"})

    def roll_back(data: dict) -> str:
        new = decision_services.decision_rollback(decision=decision, user=request.user, reason=data["reason"])
        return f"Rolled back decision #{decision.id} as decision #{new.id}."

    done, status = form_submit(request, form, roll_back)
    if done:
        return redirect("dashboard:audit", slug=slug)
    restore = json.dumps(decision.previous_state, indent=2, sort_keys=True)
    return render(
        request,
        "dashboard/rollback.html",
        {"experiment": decision.experiment, "decision": decision, "form": form, "restore": restore},
        status=status,
    )


@login_required
@require_http_methods(["GET", "POST"])
def arm_model(request: HttpRequest, slug: str, arm_id: int) -> HttpResponse:
    """GET: the arm's kept model versions; POST: roll the model back to one of them (audited)."""
    require_decider(request)
    experiment = get_object_or_404(Experiment, slug=slug)
    arm = get_object_or_404(Arm, pk=arm_id, experiment=experiment)
    form = ModelRollbackForm(request.POST or None)

    def roll_back(data: dict) -> str:
        new = decision_services.arm_rollback_to_checkpoint(arm_id=arm.id, version=data["version"], user=request.user,
                                                           reason=data["reason"])
        return f"{arm.name} serves the state of version {data['version']} again, as version {new.version}."

    done, status = form_submit(request, form, roll_back)
    if done:
        return redirect("dashboard:detail", slug=experiment.slug)
    versions = training_selectors.arm_versions(arm_id=arm.id)
    context = {"experiment": experiment, "arm": arm, "form": form, "versions": versions,
               "head": versions[0]["version"] if versions else None}
    return render(request, "dashboard/model.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def policy(request: HttpRequest, slug: str) -> HttpResponse:
    """GET: the allocation policy and guardrail settings; POST: change them (audited)."""
    require_decider(request)
    experiment = get_object_or_404(Experiment, slug=slug)
    initial = {"policy": experiment.policy, "floor": experiment.policy_floor,
               "interval_minutes": experiment.policy_interval_minutes, "guardrails": experiment.guardrails,
               "guardrail_alpha": experiment.guardrail_alpha, "primary_metric": experiment.primary_metric,
               **bounds_of(experiment).as_dict()}
    form = PolicyForm(request.POST or None, initial=initial)

    def set_policy(data: dict) -> str:
        decision = allocation_services.policy_set(
            experiment=experiment, policy=data["policy"], floor=data["floor"], interval_minutes=data["interval_minutes"],
            guardrails=data["guardrails"], guardrail_alpha=data["guardrail_alpha"], user=request.user,
            reason=data["reason"], primary_metric=data.get("primary_metric") or None,
            guardrail_bounds={**{name: data.get(name) for name in PolicyForm.BOUNDS},
                              "min_requests": data.get("min_requests") or Bounds().min_requests},
        )
        return f"Allocation policy set: recorded as decision #{decision.id}."

    done, status = form_submit(request, form, set_policy)
    if done:
        return redirect("dashboard:detail", slug=experiment.slug)
    return render(request, "dashboard/policy.html", {"experiment": experiment, "form": form}, status=status)
