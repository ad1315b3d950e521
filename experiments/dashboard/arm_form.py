"""The kind picker of the operator's forms: fields, defaults, help and validation all come from ``models.registry``.

One fieldset per kind (``kinds()`` gives the defaults, which fix each field's type; ``param_docs()`` the help
text); the page shows the chosen kind's fieldset. A submitted value is typed like its default and, if it does not
parse, passed on as typed text, so that ``validate_params()`` itself names the problem: every message shown next to
a field is the registry's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django import forms

from experiments.models import Experiment
from experiments.services.decision_core import MAX_REASON
from experiments.services.lifecycle import MAX_CONCLUSION

PREFIX = "param"


def input_name(kind: str, param: str) -> str:
    return f"{PREFIX}-{kind}-{param}"


@dataclass
class ParamField:
    name: str
    input_name: str
    input_type: str  # "number", "checkbox", "select" or "text"
    value: Any
    default: Any
    doc: str
    step: str = "any"
    lo: float | None = None
    hi: float | None = None
    choices: tuple[Any, ...] | None = None
    error: str = ""


@dataclass
class KindFieldset:
    kind: str
    params: list[ParamField] = field(default_factory=list)


def _kind_choices() -> list[tuple[str, str]]:
    from models.registry import kinds

    return [(kind, kind) for kind in kinds()]


def _typed(raw: str | None, default: Any) -> Any:
    """``raw`` as the type of ``default``; the text itself when it does not parse (the registry then says why)."""
    if isinstance(default, bool):
        return raw is not None and raw not in ("", "0", "false", "off")
    text = (raw or "").strip()
    if text == "":
        return default
    try:
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        return text
    return text


def kind_fieldsets(data=None) -> list[KindFieldset]:
    """Every kind's params, with submitted values (``data``: the POST) or the defaults."""
    from models.registry import arm_class, kinds, param_docs

    out = []
    for kind, defaults in kinds().items():
        spec = arm_class(kind).param_spec()
        docs = param_docs(kind)
        fieldset = KindFieldset(kind)
        for name, default in defaults.items():
            p = spec[name]
            key = input_name(kind, name)
            if isinstance(default, bool):
                input_type, value = "checkbox", (_typed(data.get(key), default) if data is not None else default)
            elif p.choices is not None:
                input_type, value = "select", (data.get(key, default) if data is not None else default)
            elif isinstance(default, (int, float)):
                input_type, value = "number", (data.get(key, default) if data is not None else default)
            else:
                input_type, value = "text", (data.get(key, default) if data is not None else default)
            fieldset.params.append(ParamField(
                name=name, input_name=key, input_type=input_type, value=value, default=default, doc=docs.get(name, ""),
                step="1" if isinstance(default, int) and not isinstance(default, bool) else "any",
                lo=p.lo, hi=p.hi, choices=p.choices,
            ))
        out.append(fieldset)
    return out


def params_clean(kind: str, data, fieldsets: list[KindFieldset]) -> dict[str, Any] | None:
    """The params of ``kind`` from the POST, or None after putting the registry's message on each bad field.

    Only params that differ from their defaults are passed on; each is validated alone first, so every message
    lands on its own field, then all together.
    """
    from models.registry import kinds, validate_params

    chosen = next((f for f in fieldsets if f.kind == kind), None)
    if chosen is None:
        return None
    defaults = kinds()[kind]
    params = {}
    for p in chosen.params:
        value = _typed(data.get(p.input_name), defaults[p.name])
        if value != defaults[p.name] or type(value) is not type(defaults[p.name]):
            params[p.name] = value
    ok = True
    for p in chosen.params:
        if p.name not in params:
            continue
        try:
            validate_params(kind, {p.name: params[p.name]})
        except ValueError as exc:
            p.error = str(exc)
            ok = False
    if not ok:
        return None
    return params


class ArmFields(forms.Form):
    """What an arm needs besides its params."""

    arm_name = forms.CharField(label="Arm name", max_length=100,
                               help_text="1-100 letters, digits, '_', '-' or '.'; shown in every table and chart.")
    kind = forms.ChoiceField(label="Model kind", choices=_kind_choices,
                             help_text="The arm's model; its hyper-parameters follow.")


class ExperimentCreateForm(ArmFields):
    slug = forms.CharField(max_length=100, help_text="Letters, digits, '-' or '_'; in every URL and API call.")
    name = forms.CharField(max_length=200, required=False, help_text="Shown on the dashboard (default: the slug).")
    salt = forms.CharField(max_length=64, required=False,
                           help_text="Hashed with each user id into a bucket. Leave empty for a random one; it cannot "
                           "change later (a new salt reshuffles every user).")
    mode = forms.ChoiceField(choices=[("ab", "A/B: each user sees one arm"),
                                      ("interleaved", "Interleaved: every slate team-drafts the arms")],
                             initial="ab", required=False,
                             help_text="Fixed at creation. Interleaving compares rankers with far fewer users "
                             "(docs/statistics.md §15).")
    layer = forms.ChoiceField(required=False, help_text="Optional: the experiment owns a range of this layer's users, "
                              "so no user is in two experiments of the layer (Layers page).")
    layer_share = forms.FloatField(required=False, min_value=0.0001, max_value=1.0,
                                   widget=forms.NumberInput(attrs={"step": "any"}),
                                   help_text="Its share of the layer's users; empty: the largest free range.")
    reason = forms.CharField(max_length=MAX_REASON, required=False, widget=forms.Textarea(attrs={"rows": 2}))
    field_order = ["slug", "name", "salt", "mode", "layer", "layer_share", "arm_name", "kind", "reason"]

    def __init__(self, *args, **kwargs):
        from experiments.models import Layer

        super().__init__(*args, **kwargs)
        self.fields["layer"].choices = [("", "none")] + [(s, s) for s in Layer.objects.order_by("slug")
                                                          .values_list("slug", flat=True)]
        self.fields["arm_name"].label = "Control arm"
        self.fields["arm_name"].help_text = "The first arm, the one the others are compared against."


class ArmAddForm(ArmFields):
    weight = forms.FloatField(min_value=0.0, max_value=1e6, initial=0.0,
                              help_text="0 makes a candidate: it serves nobody until it is launched.")
    reason = forms.CharField(max_length=MAX_REASON, required=False, widget=forms.Textarea(attrs={"rows": 2}))


class ConcludeForm(forms.Form):
    conclusion = forms.CharField(max_length=MAX_CONCLUSION, widget=forms.Textarea(attrs={"rows": 6}),
                                 help_text="What was learnt and what ships; kept with the results and the exports.")


def weights_form(experiment: Experiment, data=None) -> forms.Form:
    """One weight field per arm (``w-<arm id>``) and a reason."""
    form = forms.Form(data)
    for arm in experiment.arms.order_by("id"):
        form.fields[f"w-{arm.id}"] = forms.FloatField(label=arm.name, min_value=0.0, max_value=1e6, initial=arm.weight,
                                                      help_text=f"{arm.kind} · {arm.status}")
    form.fields["reason"] = forms.CharField(max_length=MAX_REASON, widget=forms.Textarea(attrs={"rows": 2}))
    return form


class WebhookForm(forms.Form):
    url = forms.CharField(label="Webhook URL", max_length=500, required=False,
                          help_text="http(s); a Slack incoming-webhook URL works as it is. Empty removes the webhook.")
    secret = forms.CharField(label="Signing secret", max_length=128, required=False,
                             help_text="16-128 characters; leave empty to keep the current one (a new webhook gets a "
                             "random one).")
    reason = forms.CharField(max_length=MAX_REASON, required=False, widget=forms.Textarea(attrs={"rows": 2}))
