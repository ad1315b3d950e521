"""GET /api/v1/experiments/<slug>/stats and POST .../promote: session, CSRF, permission, error shape."""

import json

import pytest
from django.test import Client

from experiments.api.openapi import openapi_document
from experiments.models import Decision, Experiment, OfflineEstimate
from experiments.services import stats_tick as tick_services
from tests.experiments.stats_support import (
    fast_passwords,  # noqa: F401  (autouse)
    )
from tests.support.serving import schema_check

pytestmark = pytest.mark.django_db


@pytest.fixture
def client_for(login):
    def make(username: str, promoter: bool) -> Client:
        client = login(username, promoter, csrf=True)
        client.get("/accounts/login/")  # sets the csrftoken cookie
        return client

    return make


def promote(client: Client, body: dict, csrf: bool = True):
    headers = {"HTTP_X_CSRFTOKEN": client.cookies["csrftoken"].value} if csrf else {}
    return client.post("/api/v1/experiments/homepage/promote", json.dumps(body), content_type="application/json", **headers)


def test_stats_needs_a_session_and_returns_per_arm_results(experiment, client_for):
    anonymous = Client().get("/api/v1/experiments/homepage/stats")
    doc = client_for("analyst", promoter=False).get("/api/v1/experiments/homepage/stats").json()

    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthenticated"
    assert doc["control"] == "control"
    assert [a["arm"] for a in doc["arms"]] == ["control", "treat"]
    assert doc["arms"][1]["ctr"] == pytest.approx(0.45)
    assert set(doc["arms"][1]) >= {"ctr_ci_low", "lift", "always_valid_p", "p_best", "model_version", "logloss", "auc"}
    assert [(m["name"], m["primary"]) for m in doc["metrics"]] == [
        ("ctr", True), ("conversion_rate", False), ("revenue_per_user", False)]
    assert doc["metrics"][0]["arms"][1]["value"] == pytest.approx(0.45)
    schema_check(openapi_document(), "ExperimentStats", doc)


def test_stats_show_the_newest_offline_estimate_beside_the_live_ctr(experiment, client_for):
    treat = experiment.arms.get(name="treat")
    common = {"experiment": experiment, "arm_name": "treat", "arm": treat, "kind": treat.kind, "rows": 40,
              "effective_sample_size": 30.0}
    OfflineEstimate.objects.create(**common, estimator="ips", value=0.30, ci_low=0.20, ci_high=0.40)
    OfflineEstimate.objects.create(**common, estimator="dr", value=0.41, ci_low=0.35, ci_high=0.47, model_version=3)
    tick_services.stats_tick(experiment_id=experiment.id)

    doc = client_for("analyst", promoter=False).get("/api/v1/experiments/homepage/stats").json()
    control, treat_row = doc["arms"]

    assert (treat_row["offline_estimator"], treat_row["offline_ctr"]) == ("dr", 0.41)
    assert (treat_row["offline_ci_low"], treat_row["offline_ci_high"]) == (0.35, 0.47)
    assert treat_row["ctr"] == pytest.approx(0.45)
    assert control["offline_ctr"] is None
    schema_check(openapi_document(), "ExperimentStats", doc)


def test_stats_of_an_unknown_experiment_is_a_json_404(experiment, client_for):
    response = client_for("analyst", promoter=False).get("/api/v1/experiments/nope/stats")

    assert response.status_code == 404
    assert response.json() == {"error": {"code": "experiment_not_found", "message": "no experiment 'nope'", "field": None}}


def test_analyst_promote_is_refused_by_the_server(experiment, client_for):
    response = promote(client_for("analyst", promoter=False), {"arm": "treat", "reason": "I want it"})

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert Decision.objects.count() == 0


def test_promote_without_the_csrf_token_is_refused(experiment, client_for):
    response = promote(client_for("boss", promoter=True), {"arm": "treat", "reason": "ship"}, csrf=False)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "csrf_failed"
    assert Decision.objects.count() == 0


def test_admin_promotes_with_a_reason(experiment, client_for):
    response = promote(client_for("boss", promoter=True), {"arm": "treat", "reason": "clear winner"})

    body = response.json()
    assert response.status_code == 201
    assert body["decision"]["action"] == "promote" and body["decision"]["reason"] == "clear winner"
    assert body["experiment"] == {"slug": "homepage", "status": "concluded", "winner": "treat"}
    schema_check(openapi_document(), "Promotion", body)
    assert Experiment.objects.get(pk=experiment.pk).winner.name == "treat"


@pytest.mark.parametrize(
    "body, status, code, field",
    [
        ({"arm": "ghost", "reason": "x"}, 404, "arm_not_found", "arm"),
        ({"reason": "x"}, 400, "required", "arm"),
        ({"arm": "treat"}, 400, "reason_required", "reason"),
        ({"arm": "treat", "reason": 5}, 400, "invalid_type", "reason"),
        ([1, 2], 400, "invalid_type", None),
    ],
)
def test_bad_promote_bodies_are_4xx_with_the_error_shape(experiment, body, status, code, field, client_for):
    response = promote(client_for("boss", promoter=True), body)

    assert response.status_code == status
    assert str(status) in openapi_document()["paths"]["/api/v1/experiments/{slug}/promote"]["post"]["responses"]
    schema_check(openapi_document(), "Error", response.json())
    assert (response.json()["error"]["code"], response.json()["error"]["field"]) == (code, field)
    assert Decision.objects.count() == 0


def test_promoting_a_concluded_experiment_again_is_a_409(experiment, client_for):
    client = client_for("boss", promoter=True)
    promote(client, {"arm": "treat", "reason": "first"})

    response = promote(client, {"arm": "control", "reason": "second"})

    assert response.status_code == 409 and response.json()["error"]["code"] == "not_running"
