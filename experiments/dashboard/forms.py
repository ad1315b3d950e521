from __future__ import annotations

from django import forms

from experiments.services.decisions import MAX_REASON


class DecisionForm(forms.Form):
    reason = forms.CharField(max_length=MAX_REASON, widget=forms.Textarea(attrs={"rows": 3}))


class ReweightForm(DecisionForm):
    weight = forms.FloatField(min_value=0.0, max_value=1e6)
