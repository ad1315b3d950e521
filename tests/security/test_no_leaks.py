"""Finding 7: no internal detail reaches a client. ``/healthz`` names the part that is down, not the driver's
error (host, port, database user); 400/409/503 bodies never echo Postgres messages or constraint names. The
detail is logged for the operator."""

import json
import logging

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django.urls import path

from experiments.api.views import api_view
from tests.support.live import free_port

LEAKS = ("127.0.0.1", "Error", "Connection refused", "constraint", "violates", "experiments_", "DETAIL", "psycopg")


def leaked(text: str) -> list[str]:
    return [word for word in LEAKS if word in text]


@pytest.mark.django_db
def test_healthz_does_not_show_driver_errors_to_anonymous_callers(client, caplog):
    port = free_port()
    with override_settings(REDIS_URL=f"redis://127.0.0.1:{port}/0"), caplog.at_level(logging.WARNING):
        response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "ok", "redis": "unavailable"}
    assert response.json()["error"]["message"] == "redis unavailable"
    assert leaked(response.content.decode()) == []
    assert str(port) not in response.content.decode()
    assert str(port) in caplog.text  # the operator still gets the detail


def _failing(sql: str):
    @api_view(methods=["POST"])
    def handler(request, body):
        with transaction.atomic(), connection.cursor() as cursor:  # a savepoint: the test's transaction lives on
            cursor.execute(sql)
        raise AssertionError("the statement should have failed")

    return handler


_ITEM = ("INSERT INTO experiments_item (external_id, title, category, features, active, created_at, updated_at) "
         "VALUES ('dup', '', '', '{}', true, now(), now())")

# Two throwaway endpoints on the real api_view, routed only in this module's tests.
urlpatterns = [
    path("api/v1/probe-duplicate", _failing(_ITEM)),
    path("api/v1/probe-cast", _failing("SELECT 'not-a-number'::integer")),
]


@pytest.mark.django_db
@pytest.mark.urls("tests.security.test_no_leaks")
def test_an_integrity_error_is_a_409_without_the_constraint(client, caplog):
    with connection.cursor() as cursor:
        cursor.execute(_ITEM)

    with caplog.at_level(logging.INFO):
        response = client.post("/api/v1/probe-duplicate", {}, content_type="application/json")

    body = response.content.decode()
    assert (response.status_code, json.loads(body)["error"]["code"]) == (409, "conflict")
    assert leaked(body) == []
    assert "experiments_item_external_id_key" in caplog.text


@pytest.mark.django_db
@pytest.mark.urls("tests.security.test_no_leaks")
def test_a_data_error_is_a_400_without_the_postgres_message(client, caplog):
    with caplog.at_level(logging.INFO):
        response = client.post("/api/v1/probe-cast", {}, content_type="application/json")

    body = response.content.decode()
    assert (response.status_code, json.loads(body)["error"]["code"]) == (400, "invalid")
    assert "not-a-number" not in body and leaked(body) == []
    assert "not-a-number" in caplog.text
