from __future__ import annotations

import copy

from django import forms

from experiments.business_models import METRIC_CHOICES
from experiments.models import Experiment, ExperimentSchedule
from experiments.services.decisions import MAX_REASON


class DecisionForm(forms.Form):
    reason = forms.CharField(max_length=MAX_REASON, widget=forms.Textarea(attrs={"rows": 3}))


class ReweightForm(DecisionForm):
    weight = forms.FloatField(min_value=0.0, max_value=1e6)


class PolicyForm(DecisionForm):
    policy = forms.ChoiceField(choices=Experiment.Policy.choices)
    floor = forms.FloatField(min_value=0.0, max_value=0.5, help_text="Every arm keeps at least this share of new users.")
    interval_minutes = forms.IntegerField(min_value=1, max_value=1440, help_text="How often the policy re-evaluates.")
    guardrails = forms.BooleanField(required=False, help_text="Pause harmful or diverging arms, roll back collapsed models.")
    guardrail_alpha = forms.FloatField(min_value=0.0001, max_value=0.2, help_text="Always-valid p below which an arm "
                                       "whose primary metric is below the control's is paused.")
    primary_metric = forms.ChoiceField(choices=METRIC_CHOICES, required=False, help_text="The metric that drives the promotion "
                                       "evidence, the policy's posterior and the guardrail (docs/statistics.md §19).")
    latency_p95_ms = forms.FloatField(label="latency p95 bound (ms)", required=False, min_value=0.001,
                                      max_value=600_000, help_text="Pause an arm whose serving p95 is above it (empty: "
                                      "not judged).", widget=forms.NumberInput(attrs={"step": "any"}))
    error_rate = forms.FloatField(label="error rate bound", required=False, min_value=0.0001, max_value=0.9999,
                                  help_text="Pause an arm whose requests fail through its fault more often (e.g. 0.05; "
                                  "empty: not judged).", widget=forms.NumberInput(attrs={"step": "any"}))
    min_coverage = forms.FloatField(label="minimum catalogue coverage", required=False, min_value=0.0001, max_value=1,
                                    help_text="Pause an arm that shows fewer distinct items / active items (e.g. 0.2; "
                                    "empty: not judged).", widget=forms.NumberInput(attrs={"step": "any"}))
    min_requests = forms.IntegerField(label="requests before judging", min_value=1, max_value=10_000_000, required=False,
                                      help_text="Latency and errors are judged after this many requests in the window "
                                      "(empty: 200).")

    BOUNDS = ("latency_p95_ms", "error_rate", "min_coverage", "min_requests")


class ModelRollbackForm(DecisionForm):
    version = forms.IntegerField(min_value=1)


class PlanForm(forms.Form):
    """The planning calculator's inputs (a GET form on the experiment page)."""

    mde = forms.FloatField(label="min. detectable effect (relative)", min_value=0.001, max_value=9.0, initial=0.05,
                           widget=forms.NumberInput(attrs={"step": "any"}))
    alpha = forms.FloatField(label="α", min_value=0.0001, max_value=0.4, initial=0.05,
                             widget=forms.NumberInput(attrs={"step": "any"}))
    power = forms.FloatField(label="power", min_value=0.5, max_value=0.999, initial=0.8,
                             widget=forms.NumberInput(attrs={"step": "any"}))

    def values(self) -> dict:
        """The submitted values, or the defaults when none were given or they are invalid."""
        if self.is_bound and self.is_valid():
            return self.cleaned_data
        return {name: field.initial for name, field in self.fields.items()}


def _planned(name: str) -> forms.Field:
    field = copy.deepcopy(PlanForm.base_fields[name])
    field.label = f"planned {field.label}"
    return field


class ScheduleForm(forms.Form):
    """When beat starts and stops the experiment, and whether it stops itself (services/schedules.py)."""

    _when = {"type": "datetime-local", "step": "1"}
    start_at = forms.DateTimeField(required=False, widget=forms.DateTimeInput(attrs=_when),
                                   help_text="UTC. A draft experiment starts then (empty: start it yourself).")
    stop_at = forms.DateTimeField(required=False, widget=forms.DateTimeInput(attrs=_when),
                                  help_text="UTC. A running experiment stops then: the control serves everyone.")
    auto_stop = forms.ChoiceField(choices=ExperimentSchedule.AutoStop.choices, initial="off",
                                  help_text="decided: stop once the always-valid test (Holm) calls a challenger; "
                                            "planned: stop once every competing arm has the planned sample size.")
    # The planning calculator's own fields (ranges, defaults), under the schedule's names.
    planned_mde = _planned("mde")
    planned_alpha = _planned("alpha")
    planned_power = _planned("power")
    reason = forms.CharField(max_length=MAX_REASON, required=False, widget=forms.Textarea(attrs={"rows": 2}))
