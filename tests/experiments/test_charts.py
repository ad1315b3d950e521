import json

import numpy as np
import plotly.graph_objects as go
import pytest

from experiments import charts
from experiments.charts import (
    apply_update,
    arm_order,
    ctr_figure,
    dashboard_figures,
    learning_curve_figure,
    learning_curve_update,
    needs_redraw,
    p_best_figure,
    snapshot_update,
    traffic_figure,
)
from experiments.stats import ClusteredRatioSummary, experiment_report

ARMS = ["control", "ftrl", "deep"]


def _snapshots(ticks=5):
    """Real report snapshots of a growing experiment (one tick = a few hundred users per arm)."""
    rng = np.random.default_rng(9)
    totals = dict.fromkeys(ARMS, ClusteredRatioSummary.empty())
    state, snaps = None, []
    for t in range(ticks):
        for i, arm in enumerate(ARMS):
            n = 1 + rng.poisson(3, 300)
            totals[arm] = totals[arm] + ClusteredRatioSummary.from_users(n, rng.binomial(n, 0.05 + 0.005 * i))
        r = experiment_report(
            totals, control="control", weights=dict.fromkeys(ARMS, 1), sequential_state=state, at=1_700_000_000 + t
        )
        state = r["sequential_state"]
        snaps.append(r)
    return snaps


@pytest.fixture(scope="module")
def snapshots():
    return _snapshots()


def _names(fig):
    return [t["name"] for t in fig["data"]]


def test_ctr_figure_has_a_line_and_a_band_per_arm(snapshots):
    fig = ctr_figure(snapshots)
    lines = [t for t in fig["data"] if t.get("showlegend", True)]
    bands = [t for t in fig["data"] if t.get("fill") == "tonexty"]
    assert [t["name"] for t in lines] == ARMS
    assert [t["legendgroup"] for t in bands] == ARMS
    assert len(fig["data"]) == 3 * len(ARMS)
    line, lower, upper = fig["data"][2], fig["data"][1], fig["data"][0]
    assert line["y"] == [s["arms"]["control"]["ctr"] for s in snapshots]
    assert lower["y"] == [s["arms"]["control"]["ctr_ci"][0] for s in snapshots]
    assert upper["y"] == [s["arms"]["control"]["ctr_ci"][1] for s in snapshots]
    assert line["x"] == [s["at"] for s in snapshots]
    assert fig["layout"]["meta"] == {"kind": "ctr", "arms": ARMS}


def test_traffic_and_p_best_have_one_trace_per_arm(snapshots):
    traffic, p_best = traffic_figure(snapshots), p_best_figure(snapshots)
    assert _names(traffic) == ARMS and _names(p_best) == ARMS
    assert all(t["stackgroup"] == "traffic" for t in traffic["data"])
    assert traffic["data"][1]["y"] == [s["arms"]["ftrl"]["impressions"] for s in snapshots]
    assert p_best["data"][2]["y"] == [s["arms"]["deep"]["p_best"] for s in snapshots]


def test_figures_are_valid_plotly_and_strict_json(snapshots):
    figs = dashboard_figures(snapshots)
    figs["learning"] = learning_curve_figure([{"arm": "ftrl", "model_version": 1, "at": 1.0, "logloss": 0.2}])
    assert sorted(figs) == ["ctr", "learning", "p_best", "traffic"]
    for fig in figs.values():
        go.Figure(fig)  # raises on any property Plotly does not know
        json.dumps(fig, allow_nan=False)


def test_incremental_updates_rebuild_the_full_figures(snapshots):
    arms = arm_order(snapshots)
    figs = dashboard_figures(snapshots[:2], arms)
    for snap in snapshots[2:]:
        update = snapshot_update(snap, arms)
        json.dumps(update, allow_nan=False)
        figs = {kind: apply_update(fig, update[kind]) for kind, fig in figs.items()}
    assert figs == dashboard_figures(snapshots, arms)


def test_update_from_empty_figures_equals_build(snapshots):
    arms = arm_order(snapshots)
    figs = dashboard_figures([], arms)
    for snap in snapshots:
        update = snapshot_update(snap, arms)
        figs = {kind: apply_update(fig, update[kind]) for kind, fig in figs.items()}
    assert figs == dashboard_figures(snapshots, arms)


def test_new_arm_requires_a_redraw(snapshots):
    snap = {"at": 1, "arms": {**snapshots[-1]["arms"], "bandit": {"ctr": 0.05}}}
    assert needs_redraw(snap, ARMS)
    assert not needs_redraw(snapshots[-1], ARMS)


def test_missing_values_become_gaps():
    snaps = [{"at": 0, "arms": {"a": {"ctr": None, "ctr_ci": None, "impressions": 0, "p_best": None}}}]
    fig = ctr_figure(snaps)
    assert [t["y"] for t in fig["data"]] == [[None], [None], [None]]


def test_snapshot_without_timestamp_is_rejected():
    with pytest.raises(ValueError):
        ctr_figure([{"at": None, "arms": {}}])


def test_learning_curve_per_arm_and_its_update():
    points = [{"arm": "ftrl", "model_version": v, "at": 10.0 * v, "logloss": 0.3 - 0.01 * v} for v in range(1, 6)] + [
        {"arm": "deep", "model_version": v, "at": 10.0 * v + 1, "logloss": 0.35 - 0.02 * v} for v in range(1, 4)
    ]
    arms = ["ftrl", "deep"]
    fig = learning_curve_figure(points, arms)
    assert _names(fig) == arms
    assert fig["data"][1]["y"] == pytest.approx([0.33, 0.31, 0.29])
    early = [p for p in points if p["model_version"] <= 2]
    late = [p for p in points if p["model_version"] > 2]
    rebuilt = apply_update(learning_curve_figure(early, arms), learning_curve_update(late, arms))
    assert rebuilt == fig
    by_time = learning_curve_figure(points, arms, x="at")
    assert by_time["data"][0]["x"] == [10.0, 20.0, 30.0, 40.0, 50.0]


def test_apply_update_checks_shape():
    fig = learning_curve_figure([{"arm": "a", "model_version": 1, "at": 0, "logloss": 0.1}])
    with pytest.raises(ValueError):
        apply_update(fig, {"data": {"x": [[2], [3]], "y": [[0.1], [0.2]]}, "traces": [0]})


def test_arm_colours_are_plotlys_colour_blind_safe_qualitative_palette():
    from plotly.colors import qualitative

    safe = ["#" + "".join(f"{int(c):02x}" for c in rgb[4:-1].split(",")) for rgb in qualitative.Safe]

    assert list(charts.PALETTE) == safe[: len(charts.PALETTE)]
    assert len(set(charts.PALETTE)) == len(charts.PALETTE) == 10
