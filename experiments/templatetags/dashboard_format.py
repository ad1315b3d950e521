"""Number formats shared by the dashboard templates (the live table formats the same way in JS)."""

from __future__ import annotations

from django import template

register = template.Library()


def _num(value):
    return None if value is None or value == "" else float(value)


@register.filter
def pct(value) -> str:
    v = _num(value)
    return "—" if v is None else f"{v * 100:.2f}%"


@register.filter
def signedpct(value) -> str:
    v = _num(value)
    return "—" if v is None else f"{v * 100:+.1f}%"


@register.filter
def pval(value) -> str:
    v = _num(value)
    if v is None:
        return "—"
    return "<0.001" if v < 0.001 else f"{v:.3f}"


@register.filter
def intcomma0(value) -> str:
    v = _num(value)
    return "—" if v is None else f"{int(round(v)):,}"
