"""The preference chart of an interleaved experiment: per pair of arms, the share of decisive requests the
first arm won, with its always-valid confidence sequence, over time. Pure, like :mod:`experiments.charts`.

A history point carries ``"pairs": {"<a> vs <b>": {"win_rate", "cs": [lo, hi], ...}}``; the pairs are every
combination of the report's arms in order, so the arm list fixes the traces as it does for the other charts.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Any

from experiments.charts import Figure, Snapshot, Update, _band_fill, _layout, _x, arm_color, plotly_text
from experiments.stats.preference import pair_label

KIND = "preference"


def pair_labels(arms: Sequence[str]) -> list[str]:
    return [pair_label(a, b) for a, b in combinations(arms, 2)]


def _value(snap: Snapshot, label: str, key: str, side: int | None = None) -> Any:
    row = (snap.get("pairs") or {}).get(label)
    if row is None:
        return None
    value = row.get(key)
    return value if side is None or value is None else value[side]


def _series(label: str) -> list[tuple[str, Any]]:
    return [
        ("upper", lambda s: _value(s, label, "cs", 1)),
        ("lower", lambda s: _value(s, label, "cs", 0)),
        ("win_rate", lambda s: _value(s, label, "win_rate")),
    ]


def _trace(role: str, label: str, index: int) -> dict[str, Any]:
    color = arm_color(index)
    base: dict[str, Any] = {"type": "scatter", "mode": "lines", "x": [], "y": [], "legendgroup": label}
    if role == "upper":
        return {**base, "line": {"width": 0}, "showlegend": False, "hoverinfo": "skip"}
    if role == "lower":
        return {**base, "line": {"width": 0}, "fill": "tonexty", "fillcolor": _band_fill(color), "showlegend": False,
                "hoverinfo": "skip"}
    return {**base, "name": plotly_text(label), "line": {"color": color, "width": 2}}


def preference_figure(snapshots: Sequence[Snapshot], arms: Sequence[str]) -> Figure:
    """Win rate of the first arm of each pair (decisive requests), with the always-valid 95% sequence."""
    labels = pair_labels(arms)
    xs = [_x(s) for s in snapshots]
    data = []
    for i, label in enumerate(labels):
        for role, get in _series(label):
            trace = _trace(role, label, i)
            trace["x"] = list(xs)
            trace["y"] = [get(s) for s in snapshots]
            data.append(trace)
    layout = _layout(KIND, arms, "Interleaving: share of decisive requests won (always-valid 95% band)",
                     {"title": {"text": "won by the first arm"}, "range": [0, 1], "tickformat": ".0%"})
    layout["meta"]["pairs"] = labels
    # 50% is "no preference": a band that leaves this line is significant.
    layout["shapes"] = [{"type": "line", "xref": "paper", "yref": "y", "x0": 0, "x1": 1, "y0": 0.5, "y1": 0.5,
                         "line": {"dash": "dash", "width": 1, "color": "#888888"}}]
    return {"data": data, "layout": layout}


def preference_update(snapshot: Snapshot, arms: Sequence[str]) -> Update:
    """``extendTraces`` payload appending one snapshot to :func:`preference_figure`."""
    x = _x(snapshot)
    xs: list[list[Any]] = []
    ys: list[list[Any]] = []
    for label in pair_labels(arms):
        for _role, get in _series(label):
            xs.append([x])
            ys.append([get(snapshot)])
    return {"data": {"x": xs, "y": ys}, "traces": list(range(len(xs)))}
