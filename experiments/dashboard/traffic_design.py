"""Traffic design in the dashboard: an experiment's holdout (set while a draft, ended by an operator) and the
layers page (every layer's experiments and free ranges; make a layer). Twins of ``POST …/holdout``,
``POST …/holdout/end`` and ``GET``/``POST /api/v1/layers``; the same services, so the same audit and errors."""

from __future__ import annotations

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from experiments.dashboard.common import can_decide, form_submit, require_decider
from experiments.dashboard.forms import DecisionForm
from experiments.models import Experiment
from experiments.selectors.layers import layer_summaries
from experiments.services import holdouts, layers
from experiments.services.decisions import MAX_REASON


class HoldoutForm(forms.Form):
    arm = forms.ChoiceField(help_text="The baseline: it serves the held-out users and no one else (its weight "
                            "becomes 0).")
    share = forms.FloatField(min_value=0.001, max_value=holdouts.MAX_SHARE, initial=0.05,
                             widget=forms.NumberInput(attrs={"step": "any"}),
                             help_text="Share of all users kept on the baseline for the experiment's whole life, "
                             "through promotions.")
    reason = forms.CharField(max_length=MAX_REASON, required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args, arm_names: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["arm"].choices = [(n, n) for n in arm_names]


class LayerForm(forms.Form):
    slug = forms.SlugField(max_length=100, help_text="Name it in recommendation requests: {\"layer\": \"<slug>\"}.")
    name = forms.CharField(max_length=200, required=False)


@login_required
@require_http_methods(["GET", "POST"])
def experiment_holdout(request: HttpRequest, slug: str) -> HttpResponse:
    """A draft sets its holdout; a running holdout can be ended (its users then move to the live arms or the
    winner)."""
    require_decider(request)
    experiment = get_object_or_404(Experiment, slug=slug)
    names = list(experiment.arms.order_by("id").values_list("name", flat=True))
    if experiment.holdout_running and experiment.status != Experiment.Status.DRAFT:
        form = DecisionForm(request.POST or None, initial={"reason": "long-term readout done"})

        def run(data: dict) -> str:
            decision = holdouts.holdout_end(experiment=experiment, user=request.user, reason=data["reason"])
            return f"Holdout ended: recorded as decision #{decision.id}."
    else:
        current = experiment.holdout_arm.name if experiment.holdout_running else None
        form = HoldoutForm(request.POST or None, arm_names=names,
                           initial={"arm": current, "share": experiment.holdout_share or 0.05})

        def run(data: dict) -> str:
            decision = holdouts.holdout_set(experiment=experiment, arm=data["arm"], share=data["share"],
                                            user=request.user, reason=data["reason"] or None)
            return f"Holdout set: recorded as decision #{decision.id}."
    done, status = form_submit(request, form, run)
    if done:
        return redirect("dashboard:detail", slug=experiment.slug)
    return render(request, "dashboard/holdout.html", {"experiment": experiment, "form": form,
                                                      "ending": isinstance(form, DecisionForm)}, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def layer_list(request: HttpRequest) -> HttpResponse:
    """Every layer with its experiments' ranges; staff with promote_arm make layers here."""
    allowed = can_decide(request.user)
    form = LayerForm(request.POST or None) if allowed else None
    if request.method == "POST":
        require_decider(request)

        def run(data: dict) -> str:
            layer = layers.layer_create(slug=data["slug"], name=data["name"], user=request.user)
            return f"Layer {layer.slug} made: create experiments in it from \"New experiment\"."

        done, status = form_submit(request, form, run)
        if done:
            return redirect("dashboard:layers")
    else:
        status = 200
    return render(request, "dashboard/layers.html", {"layers": layer_summaries(), "form": form,
                                                     "can_decide": allowed}, status=status)
