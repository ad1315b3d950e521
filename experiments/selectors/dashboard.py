"""Reads of the live dashboard: its state on connect (snapshot), its charts, and the reducer of live events.

"Snapshot, then events": a browser that connects gets :func:`dashboard_state`,
then folds each ``stats`` event into it as ``static/dashboard/dashboard.js`` does;
:func:`dashboard_state_apply` is that fold in Python, so a test proves that a
snapshot plus the events since equals a fresh snapshot. Event shapes are built
in :mod:`experiments.realtime`.
"""

from __future__ import annotations

from experiments import charts, charts_interleaving, realtime
from experiments.models import Experiment, StatsSnapshot
from experiments.selectors.results import experiment_arms, snapshot_latest

# The dashboard's time axis: at most this many points, one per thinned snapshot.
HISTORY_POINTS = 720


def history_points(*, experiment: Experiment, limit: int = HISTORY_POINTS) -> list[dict]:
    """The charts' time series: one point per stored snapshot, oldest first."""
    rows = (
        StatsSnapshot.objects.filter(experiment=experiment)
        .order_by("-computed_at", "-id")
        .values_list("payload__point", flat=True)[:limit]
    )
    return [point for point in reversed(list(rows)) if point]


def learning_points(point: dict) -> list[dict]:
    """A history point as progressive-validation points for the learning-curve chart."""
    return [
        {"arm": arm, "at": point["at"], "model_version": row.get("model_version"), "logloss": row.get("logloss")}
        for arm, row in point["arms"].items()
    ]


def dashboard_figures(history: list[dict], arms: list[str], stats: dict | None = None) -> dict[str, dict]:
    """Every chart of the dashboard drawn from the history points (what a new browser draws)."""
    figures = charts.dashboard_figures(history, arms)
    figures["learning"] = charts.learning_curve_figure(
        [lp for point in history for lp in learning_points(point)], arms, x="at"
    )
    if _interleaved(stats):
        figures["preference"] = charts_interleaving.preference_figure(history, arms)
    return traffic_marked(figures, stats)


def _interleaved(stats: dict | None) -> bool:
    return ((stats or {}).get("experiment") or {}).get("mode") == "interleaved"


def traffic_marked(figures: dict[str, dict], stats: dict | None) -> dict[str, dict]:
    """The traffic chart with a marker at each change of the split (the tick's ``allocation.markers``)."""
    markers = ((stats or {}).get("allocation") or {}).get("markers")
    if markers is None or "traffic" not in figures:
        return figures
    traffic = figures["traffic"]
    return {**figures, "traffic": {**traffic, "layout": {**traffic["layout"], **markers}}}


def figure_updates(point: dict, arms: list[str], stats: dict | None = None) -> dict[str, dict]:
    """The ``extendTraces`` payloads that add ``point`` to every chart."""
    updates = charts.snapshot_update(point, arms)
    updates["learning"] = charts.learning_curve_update(learning_points(point), arms, x="at")
    if _interleaved(stats):
        updates["preference"] = charts_interleaving.preference_update(point, arms)
    return updates


def dashboard_state(*, experiment: Experiment) -> dict:
    """What a dashboard that connects now must see: the latest numbers, the chart history and figures."""
    latest = snapshot_latest(experiment=experiment)
    history = history_points(experiment=experiment)
    arms = latest.payload["report"]["arm_order"] if latest else [a.name for a in experiment_arms(experiment=experiment)]
    return realtime.snapshot_event(
        experiment=experiment.slug,
        stats=latest.payload if latest else None,
        history=history,
        figures=dashboard_figures(history, arms, latest.payload if latest else None),
    )


def _figure_apply(figure: dict, update: dict, *, replace_last: bool, limit: int) -> dict:
    """``Plotly.extendTraces`` with ``maxPoints``, or an overwrite of each trace's last point."""
    fig = charts.apply_update(figure, update)
    if replace_last:
        # The thinned history overwrote its newest row: drop the point that this one replaces.
        for key, columns in update["data"].items():
            for trace_index, values in zip(update["traces"], columns, strict=True):
                series = fig["data"][trace_index][key]
                if len(series) > len(values):
                    del series[-len(values) - 1]
    for trace in fig["data"]:
        trace["x"], trace["y"] = trace["x"][-limit:], trace["y"][-limit:]
    return fig


def dashboard_state_apply(state: dict, event: dict, *, limit: int = HISTORY_POINTS) -> dict:
    """Folds one live event into a dashboard state, exactly as static/dashboard/dashboard.js does.

    Lets a test prove that a snapshot plus the events since equals a fresh snapshot.
    """
    if event.get("type") == "snapshot":
        return {k: v for k, v in event.items()}
    if event.get("type") != "stats":
        return state
    current = state.get("stats") or {}
    if current and event["stats"]["seq"] <= current.get("seq", 0):
        # Published between the group join and the snapshot read: already in the snapshot.
        return state
    replace = bool(event.get("replaces_last")) and bool(state.get("history"))
    history = list(state.get("history", []))
    if replace:
        history[-1] = event["stats"]["point"]
    else:
        history.append(event["stats"]["point"])
    history = history[-limit:]
    arms = event["stats"]["report"]["arm_order"]
    figures = state.get("figures") or {}
    if any(fig["layout"]["meta"]["arms"] != arms for fig in figures.values()) or set(figures) != set(event["figure_updates"]):
        # The browser reconnects for a fresh snapshot when the set of arms changes.
        figures = dashboard_figures(history, arms, event["stats"])
    else:
        figures = {
            kind: _figure_apply(fig, event["figure_updates"][kind], replace_last=replace, limit=limit)
            for kind, fig in figures.items()
        }
        # As the page does: Plotly.relayout(traffic, stats.allocation.markers).
        figures = traffic_marked(figures, event["stats"])
    return {**state, "stats": event["stats"], "history": history, "figures": figures}


def experiments_for_dashboard() -> list[Experiment]:
    return list(Experiment.objects.order_by("-status", "slug").select_related("winner", "control_arm"))
