"""Finding 8: names chosen by people reach Plotly as text, and CSV cells never as formulas.

Plotly renders a subset of HTML (links, bold, styles) in legends and hover labels, so an arm named
``<a href=...>`` would draw a link on every analyst's dashboard; a spreadsheet runs a CSV cell starting with
``=``, ``+``, ``-`` or ``@`` as a formula.
"""

import csv
import io

import pytest

from experiments import charts
from experiments.models import Arm
from experiments.selectors import dashboard as dashboard_selectors
from experiments.services import stats_tick as tick_services
from tests.experiments.stats_support import add_rollup, make_experiment
from tests.security.conftest import client_for

HOSTILE = '<a href="https://evil.example/">win</a><img src=x onerror=alert(1)>'


def drawn_names(figure: dict) -> list[str]:
    return [trace["name"] for trace in figure["data"]]


@pytest.mark.parametrize("kind", charts.FIGURE_KINDS)
def test_arm_names_are_plain_text_in_every_figure(kind):
    snapshot = {"at": "2026-12-01T00:00:00Z",
                "arms": {HOSTILE: {"ctr": 0.1, "ctr_ci": [0.05, 0.15], "impressions": 10, "p_best": 0.5}}}

    figure = charts.build_figure(kind, [snapshot])

    assert all("<" not in name and ">" not in name for name in drawn_names(figure))
    assert any(name.startswith("&lt;a href=") for name in drawn_names(figure))
    assert figure["layout"]["meta"]["arms"] == [HOSTILE]  # matching by name still uses the real name


def test_learning_curve_names_are_plain_text():
    figure = charts.learning_curve_figure([{"arm": HOSTILE, "model_version": 1, "at": 0.0, "logloss": 0.6}])

    assert drawn_names(figure) == [charts.plotly_text(HOSTILE)]


def test_plotly_text_escapes_ampersands_first():
    assert charts.plotly_text("a&lt;b>") == "a&amp;lt;b&gt;"


@pytest.mark.django_db
def test_the_dashboard_snapshot_draws_a_hostile_arm_name_as_text():
    experiment, arms = make_experiment(slug="xss", arms=("control", "treat"))
    Arm.objects.filter(pk=arms[1].pk).update(name=HOSTILE)
    add_rollup(arm=arms[1], impressions=[5, 6], clicks=[1, 0])
    tick_services.stats_tick(experiment_id=experiment.id)

    state = dashboard_selectors.dashboard_state(experiment=experiment)

    names = [name for figure in state["figures"].values() for name in drawn_names(figure)]
    assert charts.plotly_text(HOSTILE) in names
    assert [name for name in names if "<" in name] == []


FORMULAS = ["=HYPERLINK(\"https://evil.example\",\"x\")", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)", "\tTAB"]


@pytest.mark.django_db
def test_csv_cells_never_start_like_a_formula_and_numbers_stay_numbers():
    experiment, arms = make_experiment(slug="csv", arms=("control", *[f"arm{i}" for i in range(len(FORMULAS))]))
    for arm, name in zip(arms[1:], FORMULAS, strict=True):
        Arm.objects.filter(pk=arm.pk).update(name=name)
    add_rollup(arm=arms[0], impressions=[40, 40, 40], clicks=[20, 20, 20])
    for arm in arms[1:]:
        add_rollup(arm=arm, impressions=[40, 40], clicks=[1, 1], prefix=f"p{arm.id}")
    tick_services.stats_tick(experiment_id=experiment.id)

    response = client_for("analyst").get("/dashboard/csv/export.csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))

    assert response.status_code == 200
    assert sorted(row["arm"] for row in rows) == sorted(["control", *("'" + name for name in FORMULAS)])
    assert [row["arm"] for row in rows if row["arm"][:1] in "=+-@\t\r"] == []
    lifts = [float(row["lift"]) for row in rows if row["lift"]]
    assert lifts and min(lifts) < 0  # a negative lift is still a number, not an escaped string
    assert all(not row["lift"].startswith("'") for row in rows)
