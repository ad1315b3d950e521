"""The operator's workbench in the dashboard: create an experiment, add arms, set weights, start, stop, conclude.

Each page is the twin of a staff JSON endpoint (``experiments/api/experiments.py``) and calls the same service
(``services.lifecycle``, ``services.decisions``), which checks the permission and records the audited decision;
so a button and its endpoint cannot drift. Analysts get 403 on every page here.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from experiments.dashboard import arm_form
from experiments.dashboard.common import can_decide, form_submit, require_decider
from experiments.dashboard.forms import DecisionForm
from experiments.errors import ApplicationError
from experiments.models import Arm, Experiment
from experiments.offline import candidates as candidate_services
from experiments.offline.services import MIN_EFFECTIVE_SAMPLE_SIZE
from experiments.selectors import candidates as candidate_selectors
from experiments.selectors import segments as segment_selectors
from experiments.services import decisions as decision_services
from experiments.services import lifecycle
from experiments.services import webhooks as webhook_services

# A service's dotted field → the form field it belongs to.
_FIELD_OF = {"slug": "slug", "name": "name", "salt": "salt", "control": "arm_name", "reason": "reason",
             "weight": "weight", "conclusion": "conclusion", "layer": "layer", "layer_share": "layer_share"}


def _put_error(form, fieldsets, kind: str | None, exc: ApplicationError) -> None:
    """A service refusal next to its field: ``arms[0].name`` → arm_name, ``arm.params`` → the kind's fieldset."""
    where = (exc.field or "").rsplit(".", 1)[-1]
    if where == "params" and kind:
        chosen = next((f for f in fieldsets if f.kind == kind), None)
        if chosen and chosen.params:
            chosen.params[0].error = exc.message
            return
    target = {"name": "arm_name" if "." in (exc.field or "") else "name"}.get(where, _FIELD_OF.get(where))
    form.add_error(target if target in form.fields else None, exc.message)


def _arm_page(request, form, call) -> tuple[bool, int, list]:
    """Validates the base form and the chosen kind's params, then ``call(cleaned, params)``."""
    data = request.POST if request.method == "POST" else None
    fieldsets = arm_form.kind_fieldsets(data)
    if request.method != "POST":
        return False, 200, fieldsets
    valid = form.is_valid()
    kind = form.cleaned_data.get("kind") if valid else request.POST.get("kind")
    params = arm_form.params_clean(kind, request.POST, fieldsets) if kind else None
    if not valid or params is None:
        return False, 400, fieldsets
    try:
        call(form.cleaned_data, params)
    except ApplicationError as exc:
        _put_error(form, fieldsets, kind, exc)
        return False, exc.status, fieldsets
    return True, 201, fieldsets


@login_required
@require_http_methods(["GET", "POST"])
def experiment_new(request: HttpRequest) -> HttpResponse:
    require_decider(request)
    form = arm_form.ExperimentCreateForm(request.POST or None)
    made = {}

    def create(data: dict, params: dict) -> None:
        made["experiment"] = lifecycle.experiment_create(
            slug=data["slug"], name=data["name"], salt=data["salt"] or None, control=data["arm_name"],
            mode=data.get("mode") or "ab", layer=data.get("layer") or None, layer_share=data.get("layer_share"),
            arms=[lifecycle.ArmSpec(name=data["arm_name"], kind=data["kind"], params=params, weight=1.0)],
            user=request.user, reason=data["reason"] or None,
        )

    done, status, fieldsets = _arm_page(request, form, create)
    if done:
        return redirect("dashboard:detail", slug=made["experiment"].slug)
    return render(request, "dashboard/new.html", {"form": form, "fieldsets": fieldsets,
                                                  "chosen": form["kind"].value() or fieldsets[0].kind}, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def arm_new(request: HttpRequest, slug: str) -> HttpResponse:
    require_decider(request)
    experiment = get_object_or_404(Experiment, slug=slug)
    form = arm_form.ArmAddForm(request.POST or None)

    def add(data: dict, params: dict) -> None:
        lifecycle.arm_create(
            experiment=experiment, user=request.user, reason=data["reason"] or None,
            spec=lifecycle.ArmSpec(name=data["arm_name"], kind=data["kind"], params=params, weight=data["weight"]),
        )

    done, status, fieldsets = _arm_page(request, form, add)
    if done:
        return redirect("dashboard:detail", slug=experiment.slug)
    return render(request, "dashboard/arm_new.html",
                  {"experiment": experiment, "form": form, "fieldsets": fieldsets,
                   "chosen": form["kind"].value() or fieldsets[0].kind}, status=status)


LIFECYCLE_ACTIONS = {
    "start": ("Start", lifecycle.experiment_start,
              "Every arm with a weight takes new users; returning users get their own arm back."),
    "stop": ("Stop", lifecycle.experiment_stop,
             "Every request is served by the control arm, without a winner, until a start; assignments are kept."),
}


@login_required
@require_http_methods(["GET", "POST"])
def experiment_action(request: HttpRequest, slug: str, action: str) -> HttpResponse:
    """Start or stop: a confirmation page with a reason (the JSON twins: POST …/start, …/stop)."""
    require_decider(request)
    if action not in LIFECYCLE_ACTIONS:
        return HttpResponse(status=404)
    experiment = get_object_or_404(Experiment, slug=slug)
    label, service, explain = LIFECYCLE_ACTIONS[action]
    form = DecisionForm(request.POST or None, initial={"reason": f"{label} {experiment.slug}"})

    def run(data: dict) -> str:
        decision = service(experiment=experiment, user=request.user, reason=data["reason"])
        return f"{label}: recorded as decision #{decision.id}."

    done, status = form_submit(request, form, run)
    if done:
        return redirect("dashboard:detail", slug=experiment.slug)
    return render(request, "dashboard/lifecycle.html",
                  {"experiment": experiment, "form": form, "label": label, "explain": explain, "action": action},
                  status=status)


@login_required
@require_http_methods(["GET", "POST"])
def experiment_weights(request: HttpRequest, slug: str) -> HttpResponse:
    """Every arm's weight at once, as one decision and one period (the JSON twin: POST …/weights).

    ``?launch=<arm>`` is the candidate's "Launch": the same page with that arm's field focused and preset."""
    require_decider(request)
    experiment = get_object_or_404(Experiment, slug=slug)
    form = arm_form.weights_form(experiment, request.POST or None)
    arms = {f"w-{arm.id}": arm for arm in experiment.arms.all()}
    launch = request.GET.get("launch")
    for key, arm in arms.items():
        if request.method != "POST" and arm.name == launch and arm.weight == 0:
            form.fields[key].initial = 1.0
            form.fields[key].widget.attrs["autofocus"] = True
    if request.method != "POST":
        form.fields["reason"].initial = f"launch {launch}" if launch else ""

    def save(data: dict) -> str:
        weights = {arms[key].name: value for key, value in data.items() if key in arms}
        decision = decision_services.experiment_reweight(experiment=experiment, weights=weights, user=request.user,
                                                         reason=data["reason"])
        return f"Weights set: recorded as decision #{decision.id}."

    done, status = form_submit(request, form, save)
    if done:
        return redirect("dashboard:detail", slug=experiment.slug)
    return render(request, "dashboard/weights.html", {"experiment": experiment, "form": form, "launch": launch},
                  status=status)


@login_required
@require_http_methods(["GET", "POST"])
def experiment_conclude(request: HttpRequest, slug: str) -> HttpResponse:
    """The written conclusion, kept with the results (the JSON twin: POST …/conclude)."""
    require_decider(request)
    experiment = get_object_or_404(Experiment, slug=slug)
    form = arm_form.ConcludeForm(request.POST or None, initial={"conclusion": experiment.conclusion})

    def conclude(data: dict) -> str:
        decision = lifecycle.experiment_conclude(experiment=experiment, conclusion=data["conclusion"],
                                                 user=request.user)
        return f"Concluded: recorded as decision #{decision.id}."

    done, status = form_submit(request, form, conclude)
    if done:
        return redirect("dashboard:detail", slug=experiment.slug)
    return render(request, "dashboard/conclude.html", {"experiment": experiment, "form": form}, status=status)


def candidates_context(experiment: Experiment, user) -> dict:
    return {"experiment": experiment, "candidates": candidate_selectors.candidate_rows(experiment=experiment),
            "shown_estimators": candidate_selectors.SHOWN_ESTIMATORS, "min_ess": MIN_EFFECTIVE_SAMPLE_SIZE,
            "can_decide": can_decide(user)}


@login_required
@require_http_methods(["GET"])
def candidates(request: HttpRequest, slug: str) -> HttpResponse:
    """The candidates table alone: the page redraws it when an evaluation finishes."""
    experiment = get_object_or_404(Experiment, slug=slug)
    return render(request, "dashboard/_candidates.html", candidates_context(experiment, request.user))


@login_required
@require_http_methods(["POST"])
def arm_evaluate(request: HttpRequest, slug: str, arm_id: int) -> HttpResponse:
    """"Evaluate offline" without JavaScript (the page's script calls the JSON twin,
    ``POST /api/v1/experiments/<slug>/arms/<arm>/evaluate``): queue the job and go back to the live page."""
    require_decider(request)
    experiment = get_object_or_404(Experiment, slug=slug)
    arm = get_object_or_404(Arm, pk=arm_id, experiment=experiment)
    try:
        candidate_services.candidate_evaluation_request(experiment=experiment, arm=arm, user=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Offline evaluation of {arm.name} queued; its row updates when it is done.")
    return redirect("dashboard:detail", slug=experiment.slug)


@login_required
@require_http_methods(["GET"])
def segments(request: HttpRequest, slug: str) -> HttpResponse:
    """CTR per arm broken down by one user attribute chosen on the page (exploratory; Holm across its values)."""
    experiment = get_object_or_404(Experiment, slug=slug)
    attributes = segment_selectors.segment_attributes(experiment=experiment)
    attribute = request.GET.get("attribute") or attributes[0]
    if attribute not in attributes:
        attribute = attributes[0]
    report = segment_selectors.experiment_segments(experiment=experiment, attribute=attribute)
    rows = [(seg, [(arm, report["rows"][seg][arm]) for arm in report["arms"]]) for seg in report["segments"]]
    return render(request, "dashboard/segments.html", {"experiment": experiment, "attributes": attributes,
                                                       "report": report, "segment_rows": rows})


@login_required
@require_http_methods(["GET", "POST"])
def experiment_webhook(request: HttpRequest, slug: str) -> HttpResponse:
    """The experiment's webhook (the JSON twin: POST …/webhook); deliveries are listed on the audit page."""
    from experiments.models import WebhookEndpoint

    require_decider(request)
    experiment = get_object_or_404(Experiment, slug=slug)
    endpoint = WebhookEndpoint.objects.filter(experiment=experiment).first()
    form = arm_form.WebhookForm(request.POST or None, initial={"url": endpoint.url if endpoint else ""})

    def save(data: dict) -> str:
        decision = lifecycle.experiment_webhook_set(experiment=experiment, url=data["url"],
                                                    secret=data["secret"] or None, user=request.user,
                                                    reason=data["reason"] or None)
        return f"Webhook saved: recorded as decision #{decision.id}."

    done, status = form_submit(request, form, save)
    if done:
        return redirect("dashboard:webhook", slug=experiment.slug)
    return render(request, "dashboard/webhook.html", {"experiment": experiment, "form": form, "endpoint": endpoint,
                                                      "events": webhook_services.EVENTS}, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def experiment_schedule(request: HttpRequest, slug: str) -> HttpResponse:
    """The experiment's schedule: start and stop times and the auto-stop rule, applied by beat (services/schedules.py)."""
    from datetime import UTC

    from experiments.dashboard.forms import ScheduleForm
    from experiments.models import ExperimentSchedule
    from experiments.services import schedules

    require_decider(request)
    experiment = get_object_or_404(Experiment, slug=slug)
    current = ExperimentSchedule.objects.filter(experiment=experiment).first()
    initial = {}
    if current is not None:
        initial = {name: getattr(current, name) for name in ("auto_stop", "planned_mde", "planned_alpha", "planned_power")}
        initial.update({name: getattr(current, name).astimezone(UTC).replace(tzinfo=None)
                        for name in ("start_at", "stop_at") if getattr(current, name)})
    form = ScheduleForm(request.POST or None, initial=initial)

    def save(data: dict) -> str:
        # The form's times are UTC (the page says so), whatever the server's zone.
        when = {name: data[name].replace(tzinfo=UTC) if data[name] else None for name in ("start_at", "stop_at")}
        spec = schedules.ScheduleSpec(**when, auto_stop=data["auto_stop"], planned_mde=data["planned_mde"],
                                      planned_alpha=data["planned_alpha"], planned_power=data["planned_power"])
        decision = schedules.schedule_set(experiment=experiment, spec=spec, user=request.user, reason=data["reason"])
        return f"Schedule saved: recorded as decision #{decision.id}."

    done, status = form_submit(request, form, save)
    if done:
        return redirect("dashboard:schedule", slug=experiment.slug)
    return render(request, "dashboard/schedule.html", {"experiment": experiment, "form": form, "schedule": current},
                  status=status)
