from __future__ import annotations

from django import forms

from experiments.models import Experiment
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
                                       "whose CTR is below the control's is paused.")


class ModelRollbackForm(DecisionForm):
    version = forms.IntegerField(min_value=1)
