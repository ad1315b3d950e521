"""With Postgres unreachable the API answers 503 in the error shape (a real Daphne, a dead port)."""

import pytest
import requests

from experiments.services.impression_ids import impression_id_encode
from tests.support import live


@pytest.fixture(scope="module")
def dead_db_server():
    env = live.live_env({"DATABASE_URL": f"postgres://127.0.0.1:{live.free_port()}/nowhere"})
    proc, url = live.start_daphne(env=env)
    yield url
    proc.stop()


@pytest.mark.e2e
def test_recommendations_answer_503_when_the_database_is_down(dead_db_server):
    response = requests.post(f"{dead_db_server}/api/v1/recommendations", json={"user_id": "u"}, timeout=30)
    assert (response.status_code, response.json()["error"]["code"]) == (503, "database_unavailable")


@pytest.mark.e2e
def test_clicks_answer_503_when_the_database_is_down(dead_db_server):
    # A genuinely signed id (the live Daphne has this process's key), so that the click reaches the database.
    response = requests.post(f"{dead_db_server}/api/v1/clicks", json={"impression_id": impression_id_encode(1)},
                             timeout=30)
    assert (response.status_code, response.json()["error"]["code"]) == (503, "database_unavailable")
