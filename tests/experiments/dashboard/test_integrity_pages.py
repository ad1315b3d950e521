"""Dashboard pages of issue 12: the traffic policy form, the model-version rollback page, and what a tick shows of
both (the policy, its next re-evaluation, each change marked on the traffic chart, the guardrails' banners)."""

import pytest

from experiments.models import Arm, Decision, Experiment, ModelCheckpoint
from experiments.selectors import dashboard as dashboard_selectors
from experiments.services import decisions
from experiments.services import stats_tick as tick_services
from experiments.services.checkpoints import state_compact
from experiments.serving.arms import arm_build
from tests.experiments.dashboard.test_pages import csrf_post
from tests.experiments.stats_support import fast_passwords, make_login  # noqa: F401  (autouse)

pytestmark = pytest.mark.django_db

POLICY = {"policy": "thompson", "floor": "0.1", "interval_minutes": "5", "guardrails": "on", "guardrail_alpha": "0.01",
          "reason": "let the evidence steer"}


def test_an_admin_sets_the_policy_from_the_dashboard_and_the_page_shows_it(experiment, login):
    client = login("boss", promoter=True, csrf=True)

    response = csrf_post(client, "/dashboard/homepage/policy/", POLICY)
    tick_services.stats_tick(experiment_id=experiment.id)
    state = dashboard_selectors.dashboard_state(experiment=experiment)

    assert response.status_code == 302
    experiment.refresh_from_db()
    assert (experiment.policy, experiment.policy_interval_minutes) == ("thompson", 5)
    assert Decision.objects.get(action="policy").user.username == "boss"
    allocation = state["stats"]["allocation"]
    assert (allocation["policy"], allocation["interval_minutes"]) == ("thompson", 5)
    assert allocation["next_at"] is not None
    assert b'data-testid="allocation"' in client.get("/dashboard/homepage/").content


def test_the_policy_page_sets_the_primary_metric_and_the_live_page_names_it(experiment, login):
    client = login("boss", promoter=True, csrf=True)

    response = csrf_post(client, "/dashboard/homepage/policy/", {**POLICY, "primary_metric": "conversion_rate"})
    page = client.get("/dashboard/homepage/")

    assert response.status_code == 302
    assert Experiment.objects.get(pk=experiment.pk).primary_metric == "conversion_rate"
    assert Decision.objects.get(action="policy").stats_snapshot["settings"]["primary_metric"] == "conversion_rate"
    assert b'data-testid="metrics"' in page.content and b"Conversion rate" in page.content


def test_the_policy_page_sets_the_serving_bounds_and_the_live_page_shows_the_serving_table(experiment, login):
    client = login("boss", promoter=True, csrf=True)
    form = client.get("/dashboard/homepage/policy/").content.decode()
    assert 'name="error_rate"' in form and 'value="0.05"' in form  # the default bound, shown to be changed

    response = csrf_post(client, "/dashboard/homepage/policy/", {**POLICY, "latency_p95_ms": "35", "error_rate": "0.02",
                                                                  "min_coverage": "", "min_requests": "500"})
    tick_services.stats_tick(experiment_id=experiment.id)
    state = dashboard_selectors.dashboard_state(experiment=experiment)

    assert response.status_code == 302
    bounds = {"latency_p95_ms": 35.0, "error_rate": 0.02, "min_coverage": None, "min_requests": 500}
    assert Decision.objects.get(action="policy").stats_snapshot["settings"]["guardrail_bounds"] == bounds
    assert state["stats"]["guardrail_metrics"]["bounds"] == bounds
    assert [r["arm"] for r in state["stats"]["guardrail_metrics"]["arms"]] == ["control", "treat"]
    assert b'data-testid="serving-table"' in client.get("/dashboard/homepage/").content
    # Saving the same settings again is no change.
    again = csrf_post(client, "/dashboard/homepage/policy/", {**POLICY, "latency_p95_ms": "35", "error_rate": "0.02",
                                                               "min_coverage": "", "min_requests": "500"})
    assert again.status_code == 409 and b"These are the settings already" in again.content


def test_an_invalid_policy_is_a_400_with_the_message_next_to_the_field(experiment, login):
    Arm.objects.create(experiment=experiment, name="third", kind="popularity")
    client = login("boss", promoter=True, csrf=True)

    response = csrf_post(client, "/dashboard/homepage/policy/", {**POLICY, "floor": "0.4"})

    assert response.status_code == 400
    assert "cannot each keep 40%" in response.content.decode()
    assert Experiment.objects.get(pk=experiment.pk).policy == "fixed"


def test_an_analyst_cannot_open_the_policy_or_model_pages(experiment, login):
    client = login("analyst", promoter=False)
    treat = experiment.arms.get(name="treat")

    assert client.get("/dashboard/homepage/policy/").status_code == 403
    assert client.get(f"/dashboard/homepage/arms/{treat.id}/model/").status_code == 403


def test_each_change_of_the_split_is_marked_on_the_traffic_chart(experiment):
    boss = make_login(username="boss", promoter=True)
    treat = experiment.arms.get(name="treat")
    state = dashboard_selectors.dashboard_state(experiment=experiment)

    decisions.arm_reweight(arm=treat, weight=3, user=boss, reason="ramp")  # publishes a tick after commit
    event = tick_services.stats_tick(experiment_id=experiment.id)
    state = dashboard_selectors.dashboard_state_apply(state, event)
    fresh = dashboard_selectors.dashboard_state(experiment=experiment)

    layout = fresh["figures"]["traffic"]["layout"]
    assert [a["text"] for a in layout["annotations"]] == ["P1 weights"]
    assert layout["shapes"][0]["x0"] == fresh["stats"]["allocation"]["changes"][0]["at"]
    assert fresh["stats"]["allocation"]["changes"][0]["by"] == "boss"
    assert state["figures"] == fresh["figures"]  # the live fold marks it exactly as a fresh page does


def test_an_admin_rolls_a_model_back_to_a_chosen_version_from_the_dashboard(experiment, login):
    treat = experiment.arms.get(name="treat")
    states = {v: state_compact(arm_build(kind="popularity", params={"prior_alpha": float(v)}, arm_id=treat.id).to_bytes())
              for v in (1, 2, 3)}
    for v, state in states.items():
        ModelCheckpoint.objects.create(arm=treat, version=v, state=state,
                                       metrics={"accepted": True, "n": 300, "logloss_before": 0.3 * v})
    client = login("boss", promoter=True, csrf=True)
    url = f"/dashboard/homepage/arms/{treat.id}/model/"

    page = client.get(url)
    response = csrf_post(client, url, {"version": "1", "reason": "v2 and v3 look off"})

    assert page.status_code == 200 and b'data-version="3"' in page.content and b'value="1"' in page.content
    assert response.status_code == 302
    head = ModelCheckpoint.objects.filter(arm=treat).order_by("-version").first()
    assert (head.version, head.metrics["rollback_to"], bytes(head.state)) == (4, 1, states[1])
    decision = Decision.objects.get(action="checkpoint_rollback")
    assert (decision.user.username, decision.reason, decision.previous_state["version"]) == ("boss", "v2 and v3 look off", 3)


def test_rolling_back_to_a_version_that_is_not_kept_is_refused_on_the_page(experiment, login):
    treat = experiment.arms.get(name="treat")
    client = login("boss", promoter=True, csrf=True)

    response = csrf_post(client, f"/dashboard/homepage/arms/{treat.id}/model/", {"version": "7", "reason": "x"})

    assert response.status_code == 404 and b"Version 7 of this arm is not kept" in response.content
    assert not Decision.objects.exists()
