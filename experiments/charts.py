"""Plotly figures for the live experiment dashboard, as plain JSON-ready dicts.

Pure functions, no Django: the stats tick turns report snapshots into figures
(the full state a newly connected browser draws) and each new snapshot into an
``extendTraces`` payload (the delta it appends). ``apply_update`` mirrors
``Plotly.extendTraces`` in Python so "figure + updates == fresh figure" can be
tested on the server side.

A *snapshot* is a dict shaped like :func:`experiments.stats.experiment_report`'s
output, of which only these keys are read::

    {"at": <ISO-8601 str or epoch seconds>,
     "arms": {"<arm>": {"ctr": float|None, "ctr_ci": [lo, hi]|None,
                         "impressions": number, "p_best": float|None}}}

A *learning point* is ``{"arm": str, "model_version": int, "at": str|float,
"logloss": float|None}`` (progressive validation: loss of the model *before*
it trained on the batch).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# Plotly's colour-blind-safe qualitative palette (``plotly.colors.qualitative.Safe``, Paul Tol's), so arms stay
# distinguishable for readers with any common colour-vision deficiency; every figure gives an arm the same colour.
# Its last colour (grey) is left out: it reads as "disabled" next to the others.
PALETTE = (
    "#88ccee",
    "#cc6677",
    "#ddcc77",
    "#117733",
    "#332288",
    "#aa4499",
    "#44aa99",
    "#999933",
    "#882255",
    "#661100",
)

Figure = dict[str, Any]
Update = dict[str, Any]
Snapshot = Mapping[str, Any]

FIGURE_KINDS = ("ctr", "traffic", "p_best")


def plotly_text(text: str) -> str:
    """``text`` as Plotly shows it, literally: Plotly renders a subset of HTML (``<a href>``, ``<b>``, ``<br>``,
    styles) in legends, hover labels and annotations, and decodes entities after reading the tags. Every name or
    other user-chosen string drawn on a figure goes through this."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def arm_color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _band_fill(color: str, alpha: float = 0.18) -> str:
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def arm_order(snapshots: Iterable[Snapshot]) -> list[str]:
    """Arms in order of first appearance (trace order must never change later)."""
    seen: dict[str, None] = {}
    for snap in snapshots:
        for name in snap["arms"]:
            seen.setdefault(name, None)
    return list(seen)


def _x(snap: Snapshot) -> Any:
    at = snap.get("at")
    if at is None:
        raise ValueError("every snapshot needs an 'at' timestamp for the x axis")
    return at


def _arm_value(snap: Snapshot, arm: str, key: str) -> Any:
    row = snap["arms"].get(arm)
    return None if row is None else row.get(key)


def _ci(snap: Snapshot, arm: str, side: int) -> Any:
    ci = _arm_value(snap, arm, "ctr_ci")
    return None if ci is None else ci[side]


def _cumulative_impressions(snap: Snapshot, arm: str) -> Any:
    value = _arm_value(snap, arm, "impressions")
    return 0 if value is None else value


def _layout(kind: str, arms: Sequence[str], title: str, yaxis: dict[str, Any]) -> dict[str, Any]:
    return {
        # Title left, legend right, both above the plot: nothing collides with the date ticks.
        "title": {"text": title, "x": 0.01, "xanchor": "left"},
        "xaxis": {},  # type auto-detected: ISO strings give a date axis
        "yaxis": yaxis,
        "hovermode": "x unified",
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "right", "x": 1},
        "margin": {"t": 60, "r": 20, "b": 40, "l": 60},
        # Keeps the user's zoom/legend toggles across live redraws.
        "uirevision": kind,
        # Tells the update builder which trace belongs to which arm.
        "meta": {"kind": kind, "arms": list(arms)},
    }


# Which per-trace series each figure draws: (trace role, value getter).
def _series(kind: str, arm: str) -> list[tuple[str, Any]]:
    if kind == "ctr":
        return [
            ("upper", lambda s: _ci(s, arm, 1)),
            ("lower", lambda s: _ci(s, arm, 0)),
            ("ctr", lambda s: _arm_value(s, arm, "ctr")),
        ]
    if kind == "traffic":
        return [("impressions", lambda s: _cumulative_impressions(s, arm))]
    if kind == "p_best":
        return [("p_best", lambda s: _arm_value(s, arm, "p_best"))]
    raise ValueError(f"unknown figure kind {kind!r}; expected one of {FIGURE_KINDS}")


def _trace(kind: str, role: str, arm: str, index: int) -> dict[str, Any]:
    color = arm_color(index)
    base: dict[str, Any] = {"type": "scatter", "mode": "lines", "x": [], "y": [], "legendgroup": arm}
    if role in ("upper", "lower"):
        # The 95% band: an invisible upper line, then a lower line filled up to it.
        return {
            **base,
            "name": f"{plotly_text(arm)} 95% CI",
            "line": {"width": 0, "color": color},
            "showlegend": False,
            "hoverinfo": "skip",
            **({"fill": "tonexty", "fillcolor": _band_fill(color)} if role == "lower" else {}),
        }
    if role == "impressions":
        return {**base, "name": plotly_text(arm), "stackgroup": "traffic", "line": {"color": color}}
    return {**base, "name": plotly_text(arm), "line": {"color": color, "width": 2}}


def build_figure(kind: str, snapshots: Sequence[Snapshot], arms: Sequence[str] | None = None) -> Figure:
    """One dashboard figure ("ctr", "traffic" or "p_best") from all snapshots so far."""
    arms = list(arms) if arms is not None else arm_order(snapshots)
    xs = [_x(s) for s in snapshots]
    data = []
    for i, arm in enumerate(arms):
        for role, get in _series(kind, arm):
            trace = _trace(kind, role, arm, i)
            trace["x"] = list(xs)
            trace["y"] = [get(s) for s in snapshots]
            data.append(trace)
    titles = {
        "ctr": ("CTR per arm (95% interval)", {"title": {"text": "CTR"}, "tickformat": ".2%"}),
        "traffic": ("Cumulative impressions per arm", {"title": {"text": "impressions"}, "rangemode": "tozero"}),
        "p_best": ("P(best) per arm", {"title": {"text": "P(best)"}, "range": [0, 1], "tickformat": ".0%"}),
    }
    title, yaxis = titles[kind]
    return {"data": data, "layout": _layout(kind, arms, title, yaxis)}


def ctr_figure(snapshots: Sequence[Snapshot], arms: Sequence[str] | None = None) -> Figure:
    """CTR over time: per arm a line and its 95% band (traces upper, lower, line)."""
    return build_figure("ctr", snapshots, arms)


def traffic_figure(snapshots: Sequence[Snapshot], arms: Sequence[str] | None = None) -> Figure:
    """Cumulative impressions per arm as a stacked area: the traffic split over time."""
    return build_figure("traffic", snapshots, arms)


def p_best_figure(snapshots: Sequence[Snapshot], arms: Sequence[str] | None = None) -> Figure:
    """Bayesian P(best) per arm over time."""
    return build_figure("p_best", snapshots, arms)


def dashboard_figures(snapshots: Sequence[Snapshot], arms: Sequence[str] | None = None) -> dict[str, Figure]:
    """All snapshot-driven figures, keyed by kind (the state a new client draws)."""
    arms = list(arms) if arms is not None else arm_order(snapshots)
    return {kind: build_figure(kind, snapshots, arms) for kind in FIGURE_KINDS}


def snapshot_update(snapshot: Snapshot, arms: Sequence[str]) -> dict[str, Update]:
    """``extendTraces`` payloads appending one snapshot to each dashboard figure.

    Returns ``{kind: {"data": {"x": [[...], ...], "y": [[...], ...]}, "traces": [i, ...]}}``;
    in the browser: ``Plotly.extendTraces(div, u.data, u.traces)``. ``arms`` must be
    the figure's ``layout.meta.arms``; an arm not in it needs a full redraw.
    """
    x = _x(snapshot)
    out: dict[str, Update] = {}
    for kind in FIGURE_KINDS:
        xs: list[list[Any]] = []
        ys: list[list[Any]] = []
        for arm in arms:
            for _role, get in _series(kind, arm):
                xs.append([x])
                ys.append([get(snapshot)])
        out[kind] = {"data": {"x": xs, "y": ys}, "traces": list(range(len(xs)))}
    return out


def needs_redraw(snapshot: Snapshot, arms: Sequence[str]) -> bool:
    """True when the snapshot has an arm the figures do not (send full figures instead)."""
    return any(name not in arms for name in snapshot["arms"])


def learning_curve_figure(
    points: Sequence[Mapping[str, Any]],
    arms: Sequence[str] | None = None,
    *,
    x: str = "model_version",
    metric: str = "logloss",
) -> Figure:
    """Progressive-validation loss per arm over model versions (or ``x="at"``)."""
    if x not in ("model_version", "at"):
        raise ValueError("x must be 'model_version' or 'at'")
    if arms is None:
        arms = list(dict.fromkeys(p["arm"] for p in points))
    data = []
    for i, arm in enumerate(arms):
        mine = [p for p in points if p["arm"] == arm]
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": plotly_text(arm),
                "legendgroup": arm,
                "line": {"color": arm_color(i)},
                "x": [p[x] for p in mine],
                "y": [p.get(metric) for p in mine],
            }
        )
    layout = _layout(
        "learning",
        arms,
        f"Progressive {metric} per arm",
        {"title": {"text": f"{metric} (before update)"}},
    )
    layout["xaxis"] = {"title": {"text": "model version"}} if x == "model_version" else {}
    layout["meta"].update({"x": x, "metric": metric})
    return {"data": data, "layout": layout}


def learning_curve_update(
    points: Sequence[Mapping[str, Any]],
    arms: Sequence[str],
    *,
    x: str = "model_version",
    metric: str = "logloss",
) -> Update:
    """``extendTraces`` payload appending new learning points (any arms, in order)."""
    traces = [i for i, arm in enumerate(arms) if any(p["arm"] == arm for p in points)]
    xs = [[p[x] for p in points if p["arm"] == arms[i]] for i in traces]
    ys = [[p.get(metric) for p in points if p["arm"] == arms[i]] for i in traces]
    return {"data": {"x": xs, "y": ys}, "traces": traces}


def apply_update(figure: Figure, update: Update) -> Figure:
    """Python mirror of ``Plotly.extendTraces`` (without ``maxPoints``); returns a new figure."""
    fig = copy.deepcopy(figure)
    for key, columns in update["data"].items():
        if len(columns) != len(update["traces"]):
            raise ValueError(f"update has {len(columns)} {key}-columns for {len(update['traces'])} traces")
        for trace_index, values in zip(update["traces"], columns, strict=True):
            fig["data"][trace_index][key].extend(values)
    return fig


# Labels of the decisions that open an allocation period, as the traffic chart marks them.
CHANGE_LABELS = {
    "reallocate": "policy", "reweight": "weights", "pause": "pause", "resume": "resume", "promote": "promote",
    "rollback": "rollback", "start": "start", "stop": "stop", "arm_add": "new arm", "guardrail_pause": "guardrail",
}


def allocation_markers(changes: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Layout ``shapes`` and ``annotations`` marking each change of the traffic split on the traffic chart.

    ``changes``: ``{"at", "epoch", "action"}`` per new allocation period. Apply with
    ``Plotly.relayout(div, markers)``; the labels come from a fixed vocabulary (no user text).
    """
    shapes, annotations = [], []
    for change in changes:
        at = change["at"]
        shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": at, "x1": at, "y0": 0, "y1": 1,
                       "line": {"dash": "dot", "width": 1, "color": "#888888"}})
        label = CHANGE_LABELS.get(str(change.get("action")), "change")
        annotations.append({"x": at, "xref": "x", "y": 1, "yref": "paper", "text": f"P{int(change['epoch'])} {label}",
                            "showarrow": False, "xanchor": "left", "yanchor": "top", "textangle": -90,
                            "font": {"size": 10, "color": "#666666"}})
    return {"shapes": shapes, "annotations": annotations}
