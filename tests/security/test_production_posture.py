"""Finding 1: a production install is closed unless opened.

With nothing but SECRET_KEY and ALLOWED_HOSTS set, the settings are production's: RECSITE_DEV off,
TLS hardening on (`check --deploy` clean), ingestion closed without an API key; RECSITE_PUBLIC_INGEST=1
is the explicit way to open it, recommendations stay open. Without SECRET_KEY production refuses to start.
Each case runs in a child process whose environment is exactly that (settings are read at import).
"""

import json

import pytest

from experiments.models import Item, ShopUser
from tests.security.test_deploy_check import HOST, run
from tests.support import live
from tests.support.serving import catalogue_make, experiment_make, post_json, serving_inline  # noqa: F401

DEPLOY = ["manage.py", "check", "--deploy", "--fail-level", "WARNING"]


def defaults_env(**overrides: str) -> dict:
    """The environment of an operator who set only what production requires: no DEBUG, RECSITE_* or TLS knob."""
    env = {k: v for k, v in live.live_env().items() if k not in ("DEBUG", "SECRET_KEY", "SECRET_KEY_FALLBACKS")
           and not k.startswith("RECSITE_")}
    env.update({"SECRET_KEY": "s" * 20 + "-production-key-0123456789-abcdefghijkl", "ALLOWED_HOSTS": HOST})
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


def test_with_production_defaults_check_deploy_is_clean():
    result = run(DEPLOY, defaults_env())

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_only_recsite_tls_0_turns_tls_hardening_off():
    result = run(DEPLOY, defaults_env(RECSITE_TLS="0"))

    assert result.returncode != 0
    assert all(code in result.stdout + result.stderr
               for code in ("security.W004", "security.W008", "security.W012", "security.W016"))


def test_without_a_secret_key_production_fails_to_start_with_a_clear_message():
    result = run(["manage.py", "check"], defaults_env(SECRET_KEY=None, DEBUG="0"))

    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr
    assert "RECSITE_DEV=1" in result.stderr  # says how to run a development machine instead


def test_check_deploy_flags_the_development_key_and_mode():
    result = run(DEPLOY, defaults_env(SECRET_KEY=None, RECSITE_DEV="1", RECSITE_TLS="1"))

    assert result.returncode != 0
    assert all(code in result.stdout + result.stderr for code in ("recsite.W001", "recsite.W002", "security.W009"))


PROBE = """
import json, django
django.setup()
from django.conf import settings
from django.test import Client
client = Client(HTTP_HOST="%(host)s", HTTP_X_FORWARDED_PROTO="https")
items = client.post("/api/v1/items", {"items": [{"item_id": "x"}]}, content_type="application/json")
users = client.post("/api/v1/users", {"users": [{"user_id": "x"}]}, content_type="application/json")
print(json.dumps({"dev": settings.RECSITE_DEV, "tls": settings.RECSITE_TLS,
                  "public_ingest": settings.RECSITE["PUBLIC_INGEST"],
                  "items": [items.status_code, items.json()["error"]["code"]],
                  "users": [users.status_code, users.json()["error"]["code"]]}))
"""


def test_production_defaults_close_ingestion_before_touching_the_database():
    # No database behind this child: a refusal that needed one could not be a clean 403.
    env = defaults_env(DATABASE_URL=f"postgres://127.0.0.1:{live.free_port()}/nowhere")

    result = run(["-c", PROBE % {"host": HOST}], env)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"dev": False, "tls": True, "public_ingest": False,
                                         "items": [403, "ingestion_closed"], "users": [403, "ingestion_closed"]}


@pytest.fixture
def production(settings, serving_inline):  # noqa: F811
    settings.RECSITE = {**settings.RECSITE, "API_KEY": "", "PUBLIC_INGEST": False, "API_KEY_EVENTS": False}
    experiment_make(slug="prod")
    catalogue_make(n=8)


@pytest.mark.django_db
def test_closed_ingestion_cannot_deactivate_the_catalogue(client, production):
    rows = [{"item_id": item.external_id, "active": False} for item in Item.objects.all()]

    response = post_json(client, "/api/v1/items", {"items": rows})

    assert (response.status_code, response.json()["error"]["code"]) == (403, "ingestion_closed")
    assert "RECSITE_API_KEY" in response.json()["error"]["message"]
    assert Item.objects.filter(active=True).count() == 8


@pytest.mark.django_db
def test_closed_ingestion_writes_no_users(client, production):
    response = post_json(client, "/api/v1/users", {"users": [{"user_id": "mallory", "attributes": {"vip": True}}]})

    assert response.status_code == 403
    assert not ShopUser.objects.filter(external_id="mallory").exists()


@pytest.mark.django_db
def test_recommendations_and_clicks_stay_open_in_production(client, production):
    served = post_json(client, "/api/v1/recommendations", {"user_id": "u1", "k": 2})
    clicked = post_json(client, "/api/v1/clicks", {"impression_id": served.json()["items"][0]["impression_id"]})

    assert (served.status_code, clicked.status_code) == (200, 201)


@pytest.mark.django_db
def test_public_ingest_opens_ingestion_explicitly(client, settings, production):
    settings.RECSITE = {**settings.RECSITE, "PUBLIC_INGEST": True}

    response = post_json(client, "/api/v1/items", {"items": [{"item_id": "opened"}]})

    assert response.status_code == 200
    assert Item.objects.filter(external_id="opened").exists()


@pytest.mark.django_db
def test_with_a_key_ingestion_is_keyed_even_when_public_ingest_is_on(client, settings, production):
    settings.RECSITE = {**settings.RECSITE, "PUBLIC_INGEST": True, "API_KEY": "the-key"}

    without = post_json(client, "/api/v1/items", {"items": [{"item_id": "k"}]})
    keyed = post_json(client, "/api/v1/items", {"items": [{"item_id": "k"}]}, **{"X-API-Key": "the-key"})

    assert (without.status_code, keyed.status_code) == (401, 200)


def test_without_a_secret_key_every_command_fails_with_the_message_not_a_django_traceback():
    result = run(["manage.py", "migrate", "--plan"], defaults_env(SECRET_KEY=None))

    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr and "Traceback" not in result.stderr


def test_makemigrations_needs_no_secret_key():
    result = run(["manage.py", "makemigrations", "--check", "--dry-run"], defaults_env(SECRET_KEY=None))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "No changes detected" in result.stdout
