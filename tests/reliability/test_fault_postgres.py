"""Postgres restarted under traffic: 503 with a clear error during the outage, recovery with no manual step.

A real Daphne runs against a private Postgres cluster that the test stops
(``pg_ctl stop -m fast``) and starts again on the same data directory and port.
"""

import time

import pytest
import requests

from tests.reliability.stack import Traffic, clicks_missing
from tests.support import live


def recommend(url: str) -> requests.Response:
    return requests.post(f"{url}/api/v1/recommendations", json={"user_id": "probe", "k": 2}, timeout=15)


@pytest.mark.e2e
@pytest.mark.slow
def test_postgres_restart_answers_503_then_recovers_by_itself(private_stack):
    daphne, url = live.start_daphne(env=private_stack.env)
    traffic = None
    try:
        traffic = Traffic(url, rate=15).start()
        live.wait_until(lambda: len(traffic.clicked()) >= 10, timeout=30, what="traffic to flow")

        private_stack.pg.stop("fast")
        down_at = time.time()
        live.wait_until(lambda: len(traffic.statuses("recommend", since=down_at)) >= 15, timeout=60,
                        what="traffic during the outage")
        during = [a for a in list(traffic.answers) if a.at >= down_at]
        probe = recommend(url)
        health = requests.get(f"{url}/healthz", timeout=15)
        private_stack.pg.start()
        up_at = time.time()

        recovered_at = live.wait_until(lambda: recommend(url).status_code == 200 and time.time(), timeout=30,
                                       what="the API to recover")
        settle = recovered_at + 2.0
        live.wait_until(lambda: len(traffic.statuses("click", since=settle)) >= 20, timeout=60,
                        what="traffic after recovery")
    finally:
        if traffic is not None:
            traffic.stop()
        daphne.stop()

    assert (probe.status_code, probe.json()["error"]["code"]) == (503, "database_unavailable")
    assert "retry" in probe.json()["error"]["message"]
    assert (health.status_code, health.json()["checks"]["redis"]) == (503, "ok")
    assert {a.status for a in during} <= {200, 201, 503}, sorted({a.status for a in during})
    assert max(a.seconds for a in during if a.status == 503) < 5.0
    assert recovered_at - up_at < 15.0
    assert set(traffic.statuses(since=settle)) <= {200, 201}
    assert [s for s in traffic.statuses() if s >= 500 and s != 503 or s == 0] == []
    assert clicks_missing(private_stack, traffic.clicked()) == []
