"""/healthz answers 200 when Postgres and Redis answer, 503 naming the part that failed."""

import pytest
import requests
from django.test import override_settings

from tests.support.live import free_port, live_env, start_daphne


@pytest.mark.django_db
def test_healthz_is_200_when_database_and_redis_answer(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "redis": "ok"}


@pytest.mark.django_db
def test_healthz_names_redis_when_it_is_down(client):
    with override_settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"):
        response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 503
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"] != "ok"
    assert body["error"]["code"] == "unavailable"
    assert "redis" in body["error"]["message"]


@pytest.mark.e2e
def test_healthz_names_the_database_when_it_is_down(transactional_db):
    env = live_env({"DATABASE_URL": f"postgres://127.0.0.1:{free_port()}/nowhere"})
    proc, url = start_daphne(env=env)
    try:
        response = requests.get(f"{url}/healthz", timeout=10)
    finally:
        proc.stop()
    body = response.json()
    assert response.status_code == 503
    assert body["checks"]["redis"] == "ok"
    assert body["checks"]["database"] != "ok"
    assert "database" in body["error"]["message"]
