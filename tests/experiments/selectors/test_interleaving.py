"""An interleaved experiment's preference per pair: stats tick, stats API, exports, dashboard and promotion."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from django.test import Client

from experiments.api.openapi import openapi_document
from experiments.models import Experiment, Impression, InterleaveCredit
from experiments.selectors import dashboard as dashboard_selectors
from experiments.selectors import results as result_selectors
from experiments.services import decisions
from experiments.services import stats_tick as tick_services
from experiments.services.clicks import click_record
from experiments.services.events import recommendation_serve
from experiments.stats.preference import PairCounts, PreferenceState, pair_counts, pair_report
from tests.experiments.stats_support import PASSWORD, fast_passwords, make_login  # noqa: F401
from tests.support.serving import catalogue_make, experiment_make, schema_check

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("serving_manual")]


@pytest.fixture
def arena(serving_manual):
    catalogue_make(n=30)
    experiment = experiment_make(slug="il", arms=(("a", "popularity", 1.0), ("b", "popularity", 1.0),
                                                  ("c", "popularity", 1.0)))
    Experiment.objects.filter(pk=experiment.pk).update(mode="interleaved", control_arm=experiment.arms.get(name="a"))
    serving_manual.refresh()
    return Experiment.objects.get(pk=experiment.pk)


def _traffic(requests: int, seed: int, prefer: str = "a") -> None:
    """Shoppers who click the preferred arm's items more often (a seeded, known preference)."""
    rng = np.random.default_rng(seed)
    for r in range(requests):
        served = recommendation_serve(user_id=f"s{seed}-{r % 7}", k=6)
        for item in served.items:
            if rng.random() < (0.5 if item.arm == prefer else 0.1):
                click_record(impression_id=item.impression_id)


def _credits_matrix(experiment) -> np.ndarray:
    """Per request, clicks credited per arm (a, b, c), computed from the impression log independently."""
    order = {a.id: i for i, a in enumerate(experiment.arms.order_by("id"))}
    requests = {}
    for request_id, arm_id, clicked in Impression.objects.filter(experiment=experiment).values_list(
            "request_id", "arm_id", "click__id"):
        row = requests.setdefault(request_id, [0, 0, 0])
        row[order[arm_id]] += clicked is not None
    return np.array(list(requests.values()))


def test_a_tick_reports_each_pair_as_the_pure_statistics_compute_it(arena):
    _traffic(30, seed=1)
    payload = tick_services.stats_tick(experiment_id=arena.id)["stats"]

    credits = _credits_matrix(arena)
    pairs = {p["pair"]: p for p in payload["interleaving"]["pairs"]}
    assert list(pairs) == ["a vs b", "a vs c", "b vs c"]
    for label, (i, j) in {"a vs b": (0, 1), "a vs c": (0, 2), "b vs c": (1, 2)}.items():
        expected, _ = pair_report(pair_counts(credits, i, j))
        assert {k: pairs[label][k] for k in expected} == expected
    assert pairs["a vs b"]["wins"] > pairs["a vs b"]["losses"]
    assert payload["experiment"]["mode"] == "interleaved"
    assert set(payload["point"]["pairs"]) == set(pairs)
    assert InterleaveCredit.objects.filter(experiment=arena).count() > 0


def test_the_always_valid_state_is_carried_from_tick_to_tick(arena):
    _traffic(20, seed=2)
    first = tick_services.stats_tick(experiment_id=arena.id)["stats"]
    _traffic(20, seed=3)
    second = tick_services.stats_tick(experiment_id=arena.id)["stats"]

    state = second["interleaving"]["state"]["a vs b"]
    assert state["looks"] == first["interleaving"]["state"]["a vs b"]["looks"] + 1
    counts = PairCounts(*(second["interleaving"]["pairs"][0][k] for k in ("wins", "losses", "ties")))
    _, expected = pair_report(counts, PreferenceState.from_dict(first["interleaving"]["state"]["a vs b"]))
    assert state == expected.to_dict()


def test_the_stats_api_and_exports_carry_the_same_pair_figures(arena, client):
    _traffic(25, seed=4)
    payload = tick_services.stats_tick(experiment_id=arena.id)["stats"]
    make_login(username="analyst", promoter=False)
    client = Client()
    client.login(username="analyst", password=PASSWORD)

    api = client.get("/api/v1/experiments/il/stats").json()
    exported = json.loads(client.get("/dashboard/il/export.json").content)
    rows = list(csv.DictReader(io.StringIO(client.get("/dashboard/il/export.csv").content.decode())))

    schema_check(openapi_document(), "ExperimentStats", api)
    expected = result_selectors.results(payload)["pairs"]
    assert api["pairs"] == expected == exported["pairs"]
    pair_rows = [r for r in rows if r["pair"]]
    assert [r["pair"] for r in pair_rows] == [p["pair"] for p in expected]
    assert [int(r["wins"]) for r in pair_rows] == [p["wins"] for p in expected]
    assert [float(r["pair_always_valid_p"]) for r in pair_rows] == [p["pair_always_valid_p"] for p in expected]


def test_ab_stats_have_no_pairs(serving_manual):
    catalogue_make(n=10)
    experiment = experiment_make(slug="ab")
    serving_manual.refresh()
    recommendation_serve(user_id="x", k=3)
    payload = tick_services.stats_tick(experiment_id=experiment.id)["stats"]
    assert "interleaving" not in payload and "pairs" not in result_selectors.results(payload)
    assert "preference" not in dashboard_selectors.dashboard_state(experiment=experiment)["figures"]


def test_the_preference_chart_follows_snapshot_then_events(arena):
    _traffic(10, seed=5)
    tick_services.stats_tick(experiment_id=arena.id)
    state = dashboard_selectors.dashboard_state(experiment=arena)
    events = []
    for seed in (6, 7):
        _traffic(10, seed=seed)
        events.append(tick_services.stats_tick(experiment_id=arena.id))
    for event in events:
        state = dashboard_selectors.dashboard_state_apply(state, event)

    fresh = dashboard_selectors.dashboard_state(experiment=arena)
    assert state == fresh
    figure = fresh["figures"]["preference"]
    assert figure["layout"]["meta"]["pairs"] == ["a vs b", "a vs c", "b vs c"]
    assert len(figure["data"]) == 9  # band upper, band lower, line per pair
    assert figure["data"][2]["y"][-1] == events[-1]["stats"]["interleaving"]["pairs"][0]["win_rate"]


def test_the_dashboard_page_shows_the_pairs_table_and_chart(arena):
    make_login(username="analyst", promoter=False)
    client = Client()
    client.login(username="analyst", password=PASSWORD)
    page = client.get("/dashboard/il/").content.decode()
    assert 'data-testid="pairs-table"' in page and 'id="chart-preference"' in page


def test_promotion_concludes_the_experiment_and_the_winner_serves_alone(arena):
    _traffic(15, seed=8)
    tick_services.stats_tick(experiment_id=arena.id)
    admin = make_login(username="boss", promoter=True)
    evidence = result_selectors.arm_evidence(result_selectors.experiment_payload_current(experiment=arena), "c")
    assert any("Interleaving does not prefer c" in w for w in evidence["weak"])

    decisions.arm_promote(experiment=arena, arm=arena.arms.get(name="a"), user=admin, reason="a wins the interleave")
    from experiments.serving.cache import serving_cache

    serving_cache.refresh()
    served = recommendation_serve(user_id="after", k=5)
    assert served.arm == "a"
    assert {i.arm for i in served.items} == {None}
    assert Experiment.objects.get(pk=arena.pk).status == "concluded"
