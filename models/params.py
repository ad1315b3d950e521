"""Hyper-parameter specs: the registry validates params against these."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Param:
    """One hyper-parameter: its default (which fixes the type) and allowed range."""

    default: Any
    lo: float | None = None
    hi: float | None = None
    choices: tuple[Any, ...] | None = None
    doc: str = ""


def validate(kind: str, spec: dict[str, Param], params: dict[str, Any] | None) -> dict[str, Any]:
    """Merge ``params`` over the defaults; raise ValueError naming any problem."""
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ValueError(f"params for kind {kind!r} must be a dict, got {type(params).__name__}")
    unknown = sorted(set(params) - set(spec))
    if unknown:
        raise ValueError(f"unknown param(s) {unknown} for kind {kind!r}; allowed: {sorted(spec)}")
    out: dict[str, Any] = {}
    for name, p in spec.items():
        value = params.get(name, p.default)
        want = type(p.default)
        if want is bool:
            ok = isinstance(value, bool)
        elif want is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif want is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if ok:
                value = float(value)
                ok = math.isfinite(value)
        else:
            ok = isinstance(value, want)
        if not ok:
            raise ValueError(f"param {name!r} of kind {kind!r} must be a finite {want.__name__}, got {value!r}")
        if p.lo is not None and value < p.lo:
            raise ValueError(f"param {name!r} of kind {kind!r} must be >= {p.lo}, got {value!r}")
        if p.hi is not None and value > p.hi:
            raise ValueError(f"param {name!r} of kind {kind!r} must be <= {p.hi}, got {value!r}")
        if p.choices is not None and value not in p.choices:
            raise ValueError(f"param {name!r} of kind {kind!r} must be one of {list(p.choices)}, got {value!r}")
        out[name] = value
    return out


def defaults(spec: dict[str, Param]) -> dict[str, Any]:
    return {name: p.default for name, p in spec.items()}
