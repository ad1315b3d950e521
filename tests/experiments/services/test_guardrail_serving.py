"""Serving guardrail metrics per arm, for real: requests through the API, counts through Redis, the stats
payload's ``guardrail_metrics``, and the guardrail pausing an arm that breaches a bound."""

import re
import time

import pytest

from experiments.models import Arm, Decision, GuardrailBounds
from experiments.selectors.results import experiment_stats_payload
from experiments.services import decisions, guardrails
from experiments.serving import health as serving_health
from experiments.stats.serving_health import LATENCY_RATIO
from tests.experiments.stats_support import make_experiment
from tests.support.serving import catalogue_make, post_json

pytestmark = pytest.mark.django_db


@pytest.fixture
def treat_params() -> dict:
    return {}


@pytest.fixture
def arena(serving_manual, treat_params):
    """A running experiment (control, treat: popularity) over 20 items, loaded by this process's serving cache;
    treat gets ``treat_params`` (parametrize it) before it loads."""
    serving_health.flush()  # counts left by earlier tests of this process
    items = catalogue_make(n=20)
    experiment, arms = make_experiment(slug="guarded-serving", arms=("control", "treat"))
    if treat_params:
        Arm.objects.filter(pk=arms[1].pk).update(params=treat_params)
    serving_manual.refresh()
    return experiment, arms, items


def serve(client, n: int, *, prefix: str = "u", k: int = 3) -> list:
    return [post_json(client, "/api/v1/recommendations", {"user_id": f"{prefix}{i}", "k": k, "experiment":
                                                          "guarded-serving"}) for i in range(n)]


def section(experiment):
    serving_health.flush()
    return {row["arm"]: row for row in experiment_stats_payload(experiment=experiment, previous=None)[
        "guardrail_metrics"]["arms"]}


def test_each_arm_s_requests_latency_and_coverage_reach_the_stats_payload(client, arena):
    experiment, arms, items = arena
    responses = serve(client, 60)
    assert {r.status_code for r in responses} == {200}

    rows = section(experiment)
    served = {a.name: [r for r in responses if r.json()["arm"] == a.name] for a in arms}
    for name, mine in served.items():
        row = rows[name]
        assert row["requests"] == len(mine) > 0 and row["errors"] == 0 and row["error_rate"] == 0
        assert row["shown"] == 3 * len(mine) and row["active_items"] == 20
        distinct = {item["item_id"] for r in mine for item in r.json()["items"]}
        assert row["distinct_items"] == len(distinct) and row["coverage"] == pytest.approx(len(distinct) / 20)
        # The p95 is read off the Server-Timing the handler sent: the upper edge of its bucket, within 10 %.
        timings = sorted(float(re.search(r"app;dur=([\d.]+)", r["Server-Timing"]).group(1)) for r in mine)
        exact = timings[max(0, -(-95 * len(timings) // 100) - 1)]
        assert exact - 0.01 <= row["latency_p95_ms"] <= (exact + 0.01) * LATENCY_RATIO


@pytest.mark.parametrize("treat_params", [{"no_such_parameter": 1}])  # its model cannot be built
def test_an_arm_whose_model_cannot_load_is_paused_by_the_error_rate_bound(client, arena):
    experiment, (control, treat), _ = arena
    GuardrailBounds.objects.create(experiment=experiment, error_rate=0.05, min_requests=20)
    responses = serve(client, 80)
    failed = [r for r in responses if r.status_code != 200]
    assert failed and {r.json()["error"]["code"] for r in failed} == {"arm_unavailable"}

    rows = section(experiment)
    assert rows["treat"]["errors"] == rows["treat"]["requests"] == len(failed)
    assert rows["treat"]["breaches"] == ["error_rate_above_bound"] and rows["control"]["errors"] == 0

    made = guardrails.guardrails_check()
    assert [(d.arm_id, d.action) for d in made] == [(treat.id, Decision.Action.GUARDRAIL_PAUSE)]
    treat.refresh_from_db()
    assert treat.status == Arm.Status.PAUSED
    evidence = made[0].stats_snapshot["guardrail"]
    assert evidence["rule"] == "error_rate_above_bound" and evidence["requests"] == len(failed)


def test_latency_above_the_bound_pauses_a_challenger_never_the_control(client, arena):
    experiment, (control, treat), _ = arena
    GuardrailBounds.objects.create(experiment=experiment, latency_p95_ms=0.001, error_rate=None, min_requests=20)
    serve(client, 80)
    serving_health.flush()

    made = guardrails.guardrails_check()

    assert [(d.arm_id, d.stats_snapshot["guardrail"]["rule"]) for d in made] == [(treat.id, "latency_p95_above_bound")]
    control.refresh_from_db()
    assert control.status == Arm.Status.ACTIVE  # the control is never paused: its health shows on the dashboard
    assert section(experiment)["control"]["breaches"] == ["latency_p95_above_bound"]


def test_a_resumed_arm_is_judged_only_on_what_it_served_after_the_resume(client, arena):
    experiment, (control, treat), _ = arena
    GuardrailBounds.objects.create(experiment=experiment, latency_p95_ms=0.001, error_rate=None, min_requests=20)
    serve(client, 80)
    serving_health.flush()
    assert len(guardrails.guardrails_check()) == 1
    decisions.arm_status_set(arm=Arm.objects.get(pk=treat.pk), status=Arm.Status.ACTIVE, user=None,
                             reason="operator: the slowness was the host", action=Decision.Action.RESUME)

    assert guardrails.guardrails_check() == []  # the minutes before the resume no longer count
    treat.refresh_from_db()
    assert treat.status == Arm.Status.ACTIVE


@pytest.mark.parametrize("treat_params", [{"heads": 1, "epsilon": 0.0}])  # one greedy slate, no exploration
def test_coverage_below_the_bound_pauses_an_arm_that_shows_few_items(client, arena):
    experiment, (control, treat), _ = arena
    GuardrailBounds.objects.create(experiment=experiment, min_coverage=0.5, error_rate=None)
    serve(client, 260, k=1)  # each arm shows ≥ 100 = 5 × 20 items: enough to judge
    rows = section(experiment)
    assert rows["treat"]["shown"] >= 100 and rows["treat"]["distinct_items"] == 1
    assert rows["control"]["coverage"] > 0.5  # the default popularity explores

    made = guardrails.guardrails_check()
    assert [d.stats_snapshot["guardrail"]["rule"] for d in made] == ["coverage_below_bound"]


def test_without_redis_serving_still_answers_and_the_metrics_say_unavailable(client, arena, settings):
    experiment, _, _ = arena
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    assert {r.status_code for r in serve(client, 5)} == {200}
    started = time.perf_counter()
    assert serving_health.flush() == 0  # dropped, logged
    assert time.perf_counter() - started < 5
    payload = experiment_stats_payload(experiment=experiment, previous=None)
    assert payload["guardrail_metrics"]["available"] is False and payload["guardrail_metrics"]["arms"] == []
    assert guardrails.guardrails_check() == []
