"""Finding 6: every JSON endpoint answers JSON 4xx/503, never Django's HTML 500.

Multipart promote bodies with a valid CSRF token, the stats of an experiment with no arms, database errors in
the session views, and a non-UTF-8 query string on the fast ASGI path (servers other than Daphne pass raw bytes).
"""

import json

import pytest
import requests
from django.contrib.auth import get_user_model
from django.db import DatabaseError, DataError, IntegrityError, InterfaceError, OperationalError
from django.http.request import RawPostDataException

from experiments.api.asgi import api_fast_path
from experiments.errors import ApplicationError
from experiments.models import Decision, Experiment
from tests.experiments.api.test_database_down import dead_db_server  # noqa: F401  (fixture: Daphne, no database)
from tests.security.conftest import client_for


def error_of(response) -> tuple[int, str]:
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    return response.status_code, response.json()["error"]["code"]


@pytest.mark.django_db
def test_a_multipart_promote_with_a_valid_token_is_a_json_400(arena):
    client = client_for("admin", csrf=True)
    client.get("/accounts/login/")
    token = client.cookies["csrftoken"].value

    response = client.post("/api/v1/experiments/sec/promote", {"arm": "control", "reason": "r"},
                           headers={"X-CSRFToken": token})  # the test client's default: multipart/form-data

    assert error_of(response) == (400, "invalid_json")
    assert Decision.objects.filter(action="promote").count() == 0


@pytest.mark.django_db
def test_a_multipart_promote_with_the_token_in_the_form_is_still_checked_and_json(arena):
    client = client_for("admin", csrf=True)
    client.get("/accounts/login/")

    forged = client.post("/api/v1/experiments/sec/promote", {"arm": "control", "csrfmiddlewaretoken": "x" * 32})

    assert error_of(forged) == (403, "csrf_failed")


@pytest.mark.django_db
def test_the_stats_of_an_experiment_with_no_arms_are_a_json_409():
    Experiment.objects.create(slug="armless", name="Armless", salt="s", status="running")

    response = client_for("analyst").get("/api/v1/experiments/armless/stats")

    assert error_of(response) == (409, "experiment_has_no_arms")


@pytest.mark.django_db
@pytest.mark.parametrize("export", ["export.json", "export.csv"])
def test_the_exports_of_an_experiment_with_no_arms_are_409_not_500(export):
    Experiment.objects.create(slug="armless", name="Armless", salt="s", status="running")

    response = client_for("analyst").get(f"/dashboard/armless/{export}")

    assert error_of(response) == (409, "experiment_has_no_arms")


@pytest.mark.e2e
@pytest.mark.parametrize("method,path", [("get", "/api/v1/experiments/any/stats"),
                                         ("post", "/api/v1/experiments/any/promote")])
def test_session_views_answer_503_json_when_the_database_is_down(dead_db_server, method, path):  # noqa: F811
    # A session cookie makes the view load the session (and so touch Postgres) before anything else.
    response = requests.request(method, f"{dead_db_server}{path}", cookies={"sessionid": "x" * 32},
                                json={"arm": "a", "reason": "r"}, timeout=30)

    assert response.headers["Content-Type"].startswith("application/json")
    assert (response.status_code, response.json()["error"]["code"]) == (503, "database_unavailable")


async def _call(app, scope: dict, body: bytes = b"") -> tuple[int, dict, bytes]:
    sent: list[dict] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body_out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body_out


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/api/v1/recommendations", "/api/v1/clicks", "/api/v1/ping"])
async def test_the_fast_path_answers_a_non_utf8_query_string_with_a_json_400(path):
    async def django_app(scope, receive, send):  # never reached: the fast path owns these paths
        raise AssertionError("handed to Django")

    scope = {"type": "http", "method": "GET" if path.endswith("ping") else "POST", "path": path,
             "query_string": b"q=\xff\xfe", "headers": [(b"host", b"localhost"), (b"content-type", b"application/json")],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}

    status, headers, body = await _call(api_fast_path(django_app), scope, b"{}")

    assert status == 400
    assert headers[b"Content-Type"].startswith(b"application/json")
    assert json.loads(body)["error"]["code"] == "bad_request"


@pytest.mark.parametrize("exc,expected", [
    (ApplicationError("nope", "no", status=422), (422, "nope")),
    (OperationalError("could not connect to server at 10.1.2.3"), (503, "database_unavailable")),
    (InterfaceError("connection already closed"), (503, "database_unavailable")),
    (TimeoutError("arm 3 did not load"), (503, "unavailable")),
    (DataError("value too long for type character varying(255)"), (400, "invalid")),
    (IntegrityError('duplicate key value violates unique constraint "experiments_item_external_id_key"'), (409, "conflict")),
    (DatabaseError("canceling statement due to statement timeout"), (503, "database_error")),
    (RawPostDataException("You cannot access body after reading from request's data stream"), (400, "invalid_body")),
    (KeyError("surprise"), (500, "internal_error")),
])
def test_every_failure_maps_to_one_json_status(exc, expected):
    from experiments.api.errors import exception_response

    response = exception_response(exc, path="/api/v1/x")

    assert (response.status_code, json.loads(response.content)["error"]["code"]) == expected


@pytest.mark.django_db
def test_a_missing_user_row_in_a_session_is_not_a_500(arena):
    client = client_for("analyst")
    get_user_model().objects.filter(username="analyst").delete()

    response = client.get("/api/v1/experiments/sec/stats")

    assert error_of(response) == (401, "unauthenticated")
