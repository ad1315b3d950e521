"""The staff JSON API: create, add arm, start, stop, weights, pause/resume, list — through the real URL stack.

Authentication (session + CSRF, or a staff token from the admin), the audit (the same Decision as the dashboard's
buttons), the error shape for every bad input, and every answer against the OpenAPI document.
"""

import json

import pytest
from django.test import Client

from experiments.api.openapi import openapi_document
from experiments.models import AllocationEpoch, Arm, Decision, Experiment
from experiments.services.events import recommendation_serve
from experiments.services.tokens import api_token_issue
from tests.experiments.stats_support import fast_passwords, make_login  # noqa: F401  (autouse)
from tests.support.serving import catalogue_make, schema_check

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("serving_inline")]

DOC = openapi_document()
ARENA = {
    "slug": "launch",
    "name": "Launch from CI",
    "arms": [
        {"name": "control", "kind": "popularity", "weight": 1},
        {"name": "ftrl", "kind": "ftrl_logreg", "params": {"alpha": 0.1}, "weight": 1},
    ],
    "control": "control",
}


class Api:
    """A client of the operator API with a staff token (``Authorization: Bearer``), no session, no CSRF."""

    def __init__(self, token: str | None):
        self.client = Client(enforce_csrf_checks=True)
        self.headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}

    def post(self, path: str, body=None):
        data = body if isinstance(body, (str, bytes)) else json.dumps(body if body is not None else {})
        return self.client.post(path, data, content_type="application/json", **self.headers)

    def get(self, path: str):
        return self.client.get(path, **self.headers)


def documented(path: str, method: str, response, component: str | None = None) -> dict:
    """The answer's status is documented for this path, and its body matches the schema."""
    responses = DOC["paths"][path][method]["responses"]
    assert str(response.status_code) in responses, (path, method, response.status_code)
    body = response.json()
    schema = "Error" if response.status_code >= 400 else component
    if schema is not None:
        schema_check(DOC, schema, body)
    return body


@pytest.fixture
def boss():
    return make_login(username="boss", promoter=True)


@pytest.fixture
def api(boss):
    return Api(api_token_issue(user=boss, name="ci")[1])


@pytest.fixture
def launched(api):
    catalogue_make(n=12)
    assert api.post("/api/v1/experiments", ARENA).status_code == 201
    assert api.post("/api/v1/experiments/launch/start").status_code == 200
    return Experiment.objects.get(slug="launch")


def test_the_primary_metric_is_set_at_creation_and_refused_when_unknown(api):
    catalogue_make(n=12)
    created = documented("/api/v1/experiments", "post",
                         api.post("/api/v1/experiments", {**ARENA, "primary_metric": "revenue_per_user"}),
                         "ExperimentSummary")
    refused = api.post("/api/v1/experiments", {**ARENA, "slug": "launch-2", "primary_metric": "clicks"})

    assert created["primary_metric"] == "revenue_per_user"
    assert Experiment.objects.get(slug="launch").primary_metric == "revenue_per_user"
    assert refused.status_code == 400
    assert (refused.json()["error"]["code"], refused.json()["error"]["field"]) == ("invalid_primary_metric",
                                                                                    "primary_metric")
    assert not Experiment.objects.filter(slug="launch-2").exists()


def test_serving_guardrail_bounds_are_set_at_creation_and_listed(api):
    catalogue_make(n=12)
    created = documented("/api/v1/experiments", "post", api.post("/api/v1/experiments", {
        **ARENA, "guardrail_bounds": {"latency_p95_ms": 40, "min_coverage": 0.2, "error_rate": None}}),
        "ExperimentSummary")
    default = documented("/api/v1/experiments", "post", api.post("/api/v1/experiments", {**ARENA, "slug": "plain"}),
                         "ExperimentSummary")
    listed = {e["slug"]: e for e in api.get("/api/v1/experiments").json()["experiments"]}

    assert created["guardrails"]["bounds"] == {"latency_p95_ms": 40.0, "error_rate": None, "min_coverage": 0.2,
                                               "min_requests": 200}
    assert default["guardrails"]["bounds"] == {"latency_p95_ms": None, "error_rate": 0.05, "min_coverage": None,
                                               "min_requests": 200}
    assert listed["launch"]["guardrails"] == created["guardrails"]
    assert Decision.objects.get(experiment__slug="launch", action="create").stats_snapshot[
        "guardrail_bounds"]["latency_p95_ms"] == 40.0


def test_a_launch_from_ci_creates_adds_a_candidate_starts_and_lists(api, boss):
    catalogue_make(n=12)
    created = documented("/api/v1/experiments", "post", api.post("/api/v1/experiments", ARENA), "ExperimentSummary")
    candidate = api.post("/api/v1/experiments/launch/arms", {"name": "deep-v2", "kind": "popularity", "weight": 0})
    started = api.post("/api/v1/experiments/launch/start", {"reason": "go"})
    listed = documented("/api/v1/experiments", "get", api.get("/api/v1/experiments"), "ExperimentList")

    assert (created["status"], created["control"], created["mode"]) == ("draft", "control", "ab")
    assert created["arms"][1]["params"]["alpha"] == 0.1 and len(created["arms"][1]["params"]) > 1  # defaults filled
    assert candidate.status_code == 201
    assert documented("/api/v1/experiments/{slug}/arms", "post", candidate, "ArmAdded")["arm"]["share"] == 0.0
    assert documented("/api/v1/experiments/{slug}/start", "post", started, "DecisionResult")["experiment"]["status"] == "running"
    (row,) = listed["experiments"]
    assert [(a["name"], a["status"], a["share"]) for a in row["arms"]] == [
        ("control", "active", 0.5), ("ftrl", "active", 0.5), ("deep-v2", "active", 0.0)]
    assert row["leader"] in ("control", "ftrl", None)
    assert list(Decision.objects.order_by("id").values_list("action", "user__username")) == [
        ("create", "boss"), ("arm_add", "boss"), ("start", "boss")]
    served = {recommendation_serve(user_id=f"u{i}", k=2, experiment_slug="launch").arm for i in range(40)}
    assert served == {"control", "ftrl"}  # the candidate serves nobody


def test_weights_pause_resume_and_stop_are_audited_decisions_with_new_periods(api, launched):
    weights = api.post("/api/v1/experiments/launch/weights", {"weights": {"ftrl": 3}, "reason": "ramp ftrl"})
    pause = api.post("/api/v1/experiments/launch/arms/ftrl/pause", {"reason": "looks off"})
    resume = api.post("/api/v1/experiments/launch/arms/ftrl/resume")
    stop = api.post("/api/v1/experiments/launch/stop", {"reason": "out of budget"})

    assert documented("/api/v1/experiments/{slug}/weights", "post", weights, "DecisionResult")["experiment"]["arms"][1]["share"] == 0.75
    assert documented("/api/v1/experiments/{slug}/arms/{arm}/pause", "post", pause, "DecisionResult")["decision"]["arm"] == "ftrl"
    assert documented("/api/v1/experiments/{slug}/arms/{arm}/resume", "post", resume, "DecisionResult")["decision"]["reason"] == "resumed through the API"
    body = documented("/api/v1/experiments/{slug}/stop", "post", stop, "DecisionResult")
    assert (body["experiment"]["status"], body["experiment"]["winner"]) == ("stopped", None)
    decisions = list(Decision.objects.filter(experiment=launched).order_by("id"))
    assert [(d.action, d.user.username, d.reason) for d in decisions[-4:]] == [
        ("reweight", "boss", "ramp ftrl"), ("pause", "boss", "looks off"), ("resume", "boss", "resumed through the API"),
        ("stop", "boss", "out of budget")]
    assert all("report" in d.stats_snapshot for d in decisions[-4:])  # the evidence, as the dashboard records it
    assert list(AllocationEpoch.objects.filter(experiment=launched).order_by("epoch").values_list("epoch", "weights")) == [
        (0, {"control": 1.0, "ftrl": 1.0}), (1, {"control": 1.0, "ftrl": 3.0}), (2, {"control": 1.0, "ftrl": 0.0}),
        (3, {"control": 1.0, "ftrl": 3.0}), (4, {"control": 1.0, "ftrl": 0.0})]


def test_a_stopped_experiment_serves_its_control_and_a_restart_gives_users_their_arms_back(api, launched):
    users = [f"u{i}" for i in range(30)]
    before = {u: recommendation_serve(user_id=u, k=2, experiment_slug="launch").arm for u in users}
    api.post("/api/v1/experiments/launch/stop")

    stopped = {recommendation_serve(user_id=u, k=2).arm for u in users}  # still the default experiment
    api.post("/api/v1/experiments/launch/start")
    after = {u: recommendation_serve(user_id=u, k=2, experiment_slug="launch").arm for u in users}

    assert set(before.values()) == {"control", "ftrl"}
    assert stopped == {"control"}
    assert after == before


def test_a_session_needs_the_csrf_token_and_a_token_needs_none(boss, api):
    session = Client(enforce_csrf_checks=True)
    assert session.login(username="boss", password="pw-Tr0ub4dor-3")
    session.get("/accounts/login/")

    refused = session.post("/api/v1/experiments", json.dumps(ARENA), content_type="application/json")
    accepted = session.post("/api/v1/experiments", json.dumps(ARENA), content_type="application/json",
                            HTTP_X_CSRFTOKEN=session.cookies["csrftoken"].value)
    by_token = api.post("/api/v1/experiments", {**ARENA, "slug": "launch-2"})

    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
    assert accepted.status_code == 201 and by_token.status_code == 201


@pytest.mark.parametrize(
    "who, method, status, code",
    [
        ("anonymous", "get", 401, "unauthenticated"),
        ("bad-token", "get", 401, "invalid_token"),
        ("analyst", "get", 403, "forbidden"),
        ("staff-without-permission", "post", 403, "forbidden"),
    ],
)
def test_only_staff_use_it_and_only_promoters_change_anything(who, method, status, code):
    if who == "analyst":
        make_login(username="analyst", promoter=False)
    viewer = make_login(username="viewer", promoter=True)
    viewer.user_permissions.clear()
    tokens = {"anonymous": None, "bad-token": "rs_not-a-token", "staff-without-permission": api_token_issue(
        user=viewer, name="t")[1]}
    client = Api(tokens.get(who))
    if who == "analyst":
        assert client.client.login(username="analyst", password="pw-Tr0ub4dor-3")

    response = client.get("/api/v1/experiments") if method == "get" else client.post("/api/v1/experiments", ARENA)

    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    documented("/api/v1/experiments", method, response)
    assert not Experiment.objects.exists()


ARM = {"name": "x", "kind": "popularity"}


@pytest.mark.parametrize(
    "body, status, code, field",
    [
        ({**ARENA, "slug": "has space"}, 400, "invalid_slug", "slug"),
        ({**ARENA, "slug": None}, 400, "required", "slug"),
        ({**ARENA, "mode": "bandit"}, 400, "invalid_mode", "mode"),
        ({**ARENA, "arms": {"a": 1}}, 400, "invalid_type", "arms"),
        ({**ARENA, "arms": [{**ARM, "name": "bad/name"}]}, 400, "invalid_name", "arms[0].name"),
        ({**ARENA, "arms": [{**ARM, "kind": "nope"}]}, 400, "invalid_kind", "arms[0].kind"),
        ({**ARENA, "arms": [{**ARM, "params": {"prior_alpha": -1.0}}]}, 400, "invalid_params", "arms[0].params"),
        ({**ARENA, "arms": [{**ARM, "params": {"prior_a": 1}}]}, 400, "invalid_params", "arms[0].params"),
        ({**ARENA, "arms": [{**ARM, "weight": -1}]}, 400, "out_of_range", "arms[0].weight"),
        ({**ARENA, "arms": [{**ARM, "weight": "1"}]}, 400, "invalid_type", "arms[0].weight"),
        ({**ARENA, "arms": [ARM, ARM]}, 400, "duplicate", "arms[1].name"),
        ({**ARENA, "control": "ghost"}, 400, "unknown_arm", "control"),
        ([ARENA], 400, "invalid_type", None),
        ("{not json", 400, "invalid_json", None),
        ('{"slug": NaN}', 400, "invalid_json", None),
        ({**ARENA, "name": "x" * 300}, 400, "too_long", "name"),
        ({**ARENA, "guardrail_bounds": {"error_rate": 1.5}}, 400, "invalid_bound", "error_rate"),
        ({**ARENA, "guardrail_bounds": {"latency_p95_ms": -1}}, 400, "invalid_bound", "latency_p95_ms"),
        ({**ARENA, "guardrail_bounds": {"min_requests": 2.5}}, 400, "invalid_bound", "min_requests"),
        ({**ARENA, "guardrail_bounds": {"p99": 10}}, 400, "invalid_bound", "p99"),
        ({**ARENA, "guardrail_bounds": [1]}, 400, "invalid_bound", "guardrail_bounds"),
        ({**ARENA, "arms": [{**ARM, "params": {"pad": "x" * 70_000}}]}, 413, "body_too_large", None),
    ],
)
def test_bad_create_bodies_are_4xx_with_the_error_shape(api, body, status, code, field):
    response = api.post("/api/v1/experiments", body)

    error = documented("/api/v1/experiments", "post", response)["error"]
    assert (response.status_code, error["code"], error["field"]) == (status, code, field)
    assert not Experiment.objects.exists()


def test_the_registrys_message_names_the_bad_param(api):
    error = api.post("/api/v1/experiments", {**ARENA, "arms": [{**ARM, "params": {"prior_alpha": -1.0}}]}).json()["error"]

    assert "prior_alpha" in error["message"] and ">=" in error["message"]


def test_a_taken_slug_is_a_409(api, launched):
    response = api.post("/api/v1/experiments", ARENA)

    assert (response.status_code, response.json()["error"]["code"]) == (409, "experiment_exists")
    documented("/api/v1/experiments", "post", response)


@pytest.mark.parametrize(
    "path, body, status, code",
    [
        ("/api/v1/experiments/nope/start", {}, 404, "experiment_not_found"),
        ("/api/v1/experiments/launch/start", {}, 409, "already_running"),
        ("/api/v1/experiments/launch/weights", {}, 400, "required"),
        ("/api/v1/experiments/launch/weights", {"weights": {}}, 400, "invalid_type"),
        ("/api/v1/experiments/launch/weights", {"weights": {"ghost": 1}}, 400, "unknown_arm"),
        ("/api/v1/experiments/launch/weights", {"weights": {"ftrl": -2}}, 400, "out_of_range"),
        ("/api/v1/experiments/launch/weights", {"weights": {"ftrl": True}}, 400, "invalid_type"),
        ("/api/v1/experiments/launch/weights", {"weights": {"ftrl": 1}}, 409, "no_change"),
        ("/api/v1/experiments/launch/weights", {"weights": {"ftrl": 0, "control": 0}}, 409, "no_traffic"),
        ("/api/v1/experiments/launch/weights", {"weights": {"ftrl": 2}, "reason": 7}, 400, "invalid_type"),
        ("/api/v1/experiments/launch/arms/ghost/pause", {}, 404, "arm_not_found"),
        ("/api/v1/experiments/launch/arms/ftrl/resume", {}, 409, "no_change"),
        ("/api/v1/experiments/launch/arms", {"name": "control", "kind": "popularity"}, 409, "arm_exists"),
        ("/api/v1/experiments/launch/arms", {"name": "new", "kind": "popularity", "params": []}, 400, "invalid_type"),
    ],
)
def test_bad_actions_are_4xx_and_change_nothing(api, launched, path, body, status, code):
    epoch, decisions = launched.allocation_epoch, Decision.objects.count()

    response = api.post(path, body)

    template = path.replace("/launch/", "/{slug}/").replace("/nope/", "/{slug}/").replace("/ghost/", "/{arm}/")
    template = template.replace("/ftrl/", "/{arm}/")
    documented(template, "post", response)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    assert Experiment.objects.get(pk=launched.pk).allocation_epoch == epoch
    assert Decision.objects.count() == decisions


def test_stopping_a_draft_and_pausing_the_last_arm_are_409s(api):
    api.post("/api/v1/experiments", {**ARENA, "arms": [ARENA["arms"][0]]})

    stop = api.post("/api/v1/experiments/launch/stop")
    api.post("/api/v1/experiments/launch/start")
    pause = api.post("/api/v1/experiments/launch/arms/control/pause")

    assert (stop.status_code, stop.json()["error"]["code"]) == (409, "not_running")
    assert (pause.status_code, pause.json()["error"]["code"]) == (409, "no_traffic")
    assert Arm.objects.get(name="control").status == "active"


def test_other_methods_are_405_with_allow(api):
    response = api.get("/api/v1/experiments/launch/start")

    assert response.status_code == 405 and response["Allow"] == "POST"
    documented("/api/v1/experiments/{slug}/start", "post", response)


def test_conclude_keeps_the_written_conclusion_with_the_results_after_a_promotion(api, launched):
    early = api.post("/api/v1/experiments/launch/conclude", {"conclusion": "too early"})
    api.post("/api/v1/experiments/launch/promote", {"arm": "ftrl", "reason": "better"})
    missing = api.post("/api/v1/experiments/launch/conclude", {})
    concluded = api.post("/api/v1/experiments/launch/conclude", {"conclusion": "FTRL ships: +12% CTR."})

    assert documented("/api/v1/experiments/{slug}/conclude", "post", early)["error"]["code"] == "not_concludable"
    assert early.status_code == 409
    assert missing.status_code == 400 and missing.json()["error"]["field"] == "conclusion"
    body = documented("/api/v1/experiments/{slug}/conclude", "post", concluded, "DecisionResult")
    assert (body["decision"]["action"], body["experiment"]["winner"], body["experiment"]["conclusion"]) == (
        "conclude", "ftrl", "FTRL ships: +12% CTR.")
    decision = Decision.objects.get(experiment=launched, action="conclude")
    assert decision.stats_snapshot["conclusion"] == "FTRL ships: +12% CTR." and "report" in decision.stats_snapshot
    assert Experiment.objects.get(slug="launch").status == "concluded"


def test_create_takes_a_salt_and_refuses_a_bad_one(api):
    made = api.post("/api/v1/experiments", {**ARENA, "salt": "fixed-salt"})
    bad = api.post("/api/v1/experiments", {**ARENA, "slug": "other", "salt": "no spaces"})

    assert made.status_code == 201 and Experiment.objects.get(slug="launch").salt == "fixed-salt"
    assert (bad.status_code, bad.json()["error"]["field"]) == (400, "salt")


def test_evaluate_queues_the_offline_job_for_a_candidate_and_refuses_without_logs(
        api, launched, monkeypatch, django_capture_on_commit_callbacks):
    sent = []  # the queue is the boundary; the job itself runs in a real worker in the end-to-end test
    monkeypatch.setattr("experiments.offline.candidates.current_app.send_task",
                        lambda name, kwargs, queue: sent.append((name, kwargs, queue)))
    api.post("/api/v1/experiments/launch/arms", {"name": "cand", "kind": "popularity", "weight": 0})
    refused = api.post("/api/v1/experiments/launch/arms/cand/evaluate")
    for i in range(6):
        recommendation_serve(user_id=f"u{i}", k=2, experiment_slug="launch")
    with django_capture_on_commit_callbacks(execute=True):
        queued = api.post("/api/v1/experiments/launch/arms/cand/evaluate", {"n_bootstrap": 50})
    bad = api.post("/api/v1/experiments/launch/arms/cand/evaluate", {"n_bootstrap": 1})

    assert documented("/api/v1/experiments/{slug}/arms/{arm}/evaluate", "post", refused)["error"]["code"] == "no_logs"
    body = documented("/api/v1/experiments/{slug}/arms/{arm}/evaluate", "post", queued, "EvaluationQueued")
    assert (queued.status_code, body["arm"], body["state"]) == (202, "cand", "queued")
    assert sent == [("recsite.offline.evaluate", {"arm_id": Arm.objects.get(name="cand").id, "job": body["job"],
                                                  "n_bootstrap": 50, "logging_arms": None}, "default")]
    assert (bad.status_code, bad.json()["error"]["field"]) == (400, "n_bootstrap")


def test_the_webhook_is_set_through_the_api_with_its_secret_and_refused_for_a_bad_url(api, launched):
    made = api.post("/api/v1/experiments/launch/webhook", {"url": "https://hooks.example.com/T/B/x"})
    kept = api.post("/api/v1/experiments/launch/webhook", {"url": "https://hooks.example.com/T/B/y", "reason": "move"})
    bad = api.post("/api/v1/experiments/launch/webhook", {"url": "javascript:alert(1)"})

    body = documented("/api/v1/experiments/{slug}/webhook", "post", made, "DecisionResult")
    assert body["decision"]["action"] == "webhook" and len(body["webhook"]["secret"]) >= 32
    assert kept.json()["webhook"] == {"url": "https://hooks.example.com/T/B/y", "secret": body["webhook"]["secret"]}
    assert (bad.status_code, bad.json()["error"]["field"]) == (400, "url")


def test_a_webhook_request_without_url_is_refused(api, launched):
    missing = api.post("/api/v1/experiments/launch/webhook", {"secret": "x" * 20})
    null = api.post("/api/v1/experiments/launch/webhook", {"url": None})

    assert (missing.status_code, missing.json()["error"]["code"], missing.json()["error"]["field"]) == (
        400, "required", "url")
    assert (null.status_code, null.json()["error"]["field"]) == (400, "url")


def test_an_interleaved_experiment_from_ci_serves_team_drafted_slates_and_promotes(api, client):
    catalogue_make(n=12)
    created = documented("/api/v1/experiments", "post",
                         api.post("/api/v1/experiments", {**ARENA, "mode": "interleaved"}), "ExperimentSummary")
    api.post("/api/v1/experiments/launch/start")
    response = client.post("/api/v1/recommendations", json.dumps({"user_id": "u1", "k": 6, "experiment": "launch"}),
                           content_type="application/json")
    body = response.json()
    promoted = api.post("/api/v1/experiments/launch/promote", {"arm": "ftrl", "reason": "wins the interleave"})
    after = client.post("/api/v1/recommendations", json.dumps({"user_id": "u1", "k": 3, "experiment": "launch"}),
                        content_type="application/json").json()

    assert created["mode"] == "interleaved"
    schema_check(DOC, "Recommendation", body)
    assert body["arm"] == "control+ftrl"
    assert sorted(i["arm"] for i in body["items"]) == ["control"] * 3 + ["ftrl"] * 3
    assert promoted.status_code == 201
    assert after["arm"] == "ftrl" and all("arm" not in i for i in after["items"])
