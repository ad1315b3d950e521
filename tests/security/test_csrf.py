"""CSRF: every browser form that changes state needs the token; only the session-less JSON API is exempt."""

import re

import pytest
from channels.testing import WebsocketCommunicator
from django.urls import URLPattern, URLResolver, get_resolver

from experiments.models import Decision
from tests.security.conftest import client_for
from tests.security.test_permissions import action_path, traffic_state
from tests.support.live import ROOT

# Views that skip CSRF: the JSON API authenticates by API key (or not at all), never by the session cookie.
CSRF_EXEMPT_ALLOWED = {
    "experiments.api.views.recommendations",
    "experiments.api.views.clicks",
    "experiments.api.views.events",
    "experiments.api.views.items",
    "experiments.api.views.users",
    "experiments.api.views.schema",
    "experiments.api.views.ping",
    "experiments.api.views.not_found",
    # Session endpoints that run Django's CSRF check themselves (to answer JSON): proven below.
    "experiments.api.experiments.experiment_stats",
    "experiments.api.experiments.experiment_promote",
    # The operator API (experiments.api.auth.operator_view: session + CSRF, or a bearer token; tests/experiments/api).
    "experiments.api.experiments.experiments",
    "experiments.api.experiments.experiment_arms",
    "experiments.api.experiments.experiment_start",
    "experiments.api.experiments.experiment_stop",
    "experiments.api.experiments.experiment_weights",
    "experiments.api.experiments.arm_pause",
    "experiments.api.experiments.arm_resume",
    "experiments.api.experiments.arm_shadow",
    "experiments.api.experiments.arm_evaluate",
    "experiments.api.experiments.experiment_conclude",
    "experiments.api.experiments.experiment_webhook",
    "experiments.api.experiments.experiment_holdout",
    "experiments.api.experiments.experiment_holdout_end",
    "experiments.api.experiments.layers",
    # GET only (operator_view, staff=False): reads, which Django's CSRF check never covers anyway.
    "experiments.api.exports.experiment_users_csv",
    "experiments.api.exports.experiment_users_parquet",
}


def _views(resolver=None, prefix: str = ""):
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            yield from _views(entry, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry.callback


def _dotted(callback) -> str:
    target = getattr(callback, "view_class", None) or getattr(callback, "__wrapped__", callback)
    return f"{target.__module__}.{getattr(target, '__qualname__', target.__class__.__name__)}"


def test_only_the_json_api_is_csrf_exempt():
    exempt = {_dotted(cb) for _, cb in _views() if getattr(cb, "csrf_exempt", False)}

    assert exempt - CSRF_EXEMPT_ALLOWED == set()
    assert {"experiments.api.views.items", "experiments.api.views.clicks"} <= exempt


def test_the_exempt_event_api_never_reads_the_session():
    source = (ROOT / "experiments" / "api" / "views.py").read_text()

    assert re.findall(r"request\.(user|session)\b", source) == []


def test_every_post_form_in_the_templates_carries_the_token():
    forms = []
    for path in sorted((ROOT / "templates").rglob("*.html")):
        text = path.read_text()
        for match in re.finditer(r"<form\b[^>]*method=\"post\"[^>]*>(.*?)</form>", text, re.S | re.I):
            forms.append((path.name, "{% csrf_token %}" in match.group(1)))

    assert len(forms) >= 4
    assert [name for name, ok in forms if not ok] == []


@pytest.mark.django_db
@pytest.mark.parametrize("action", ["promote", "pause", "resume", "reweight", "rollback"])
def test_decisions_without_the_token_are_refused(arena, action):
    experiment = arena[0]
    path, form = action_path(action, arena)
    before = traffic_state(experiment)
    client = client_for("admin", csrf=True)

    forged = client.post(path, form)
    client.get(path)
    genuine = client.post(path, {**form, "csrfmiddlewaretoken": client.cookies["csrftoken"].value})

    assert forged.status_code == 403
    assert genuine.status_code == 302
    assert Decision.objects.count() == before[3] + 1


@pytest.mark.django_db
def test_json_promote_checks_the_token_itself(arena):
    client = client_for("admin", csrf=True)
    client.get("/accounts/login/")
    token = client.cookies["csrftoken"].value
    body = {"arm": "control", "reason": "wins"}

    forged = client.post("/api/v1/experiments/sec/promote", body, content_type="application/json")
    wrong = client.post("/api/v1/experiments/sec/promote", body, content_type="application/json",
                        headers={"X-CSRFToken": "x" * 32})
    genuine = client.post("/api/v1/experiments/sec/promote", body, content_type="application/json",
                          headers={"X-CSRFToken": token})

    assert (forged.status_code, forged.json()["error"]["code"]) == (403, "csrf_failed")
    assert wrong.status_code == 403
    assert genuine.status_code == 201
    assert Decision.objects.filter(action="promote").count() == 1


@pytest.mark.django_db
def test_logout_and_login_need_the_token():
    client = client_for("admin", csrf=True)

    logout = client.post("/accounts/logout/")
    login = client_for("anonymous", csrf=True).post("/accounts/login/", {"username": "admin", "password": "x"})

    assert (logout.status_code, login.status_code) == (403, 403)
    assert client.get("/dashboard/").status_code != 302  # still logged in


@pytest.mark.asyncio
async def test_dashboard_websocket_refuses_foreign_origins_and_anonymous_users():
    from recsite.asgi import application

    foreign = WebsocketCommunicator(application, "/ws/experiments/sec/", headers=[(b"origin", b"https://evil.example"),
                                                                                 (b"host", b"localhost")])
    anonymous = WebsocketCommunicator(application, "/ws/experiments/sec/", headers=[(b"origin", b"http://localhost"),
                                                                                   (b"host", b"localhost")])

    foreign_connected, _ = await foreign.connect()
    anonymous_connected, anonymous_code = await anonymous.connect()

    assert foreign_connected is False
    assert (anonymous_connected, anonymous_code) == (False, 4401)


@pytest.mark.django_db
def test_there_is_no_password_reset_form_to_abuse():
    """Password reset would e-mail through an unconfigured SMTP server: a 500 and a mail cannon."""
    assert client_for("anonymous").post("/accounts/password_reset/", {"email": "admin@example.com"}).status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("path, body", [
    ("/api/v1/experiments/sec/conclude", {"conclusion": "done"}),
    ("/api/v1/experiments/sec/webhook", {"url": "https://hooks.example.com/x"}),
    ("/api/v1/experiments/sec/arms/control/evaluate", {}),
])
def test_the_workbench_twins_refuse_a_session_post_without_the_token(arena, path, body):
    client = client_for("admin", csrf=True)
    client.get("/accounts/login/")

    forged = client.post(path, body, content_type="application/json")

    assert (forged.status_code, forged.json()["error"]["code"]) == (403, "csrf_failed")
    assert not Decision.objects.filter(action__in=["conclude", "webhook"]).exists()
