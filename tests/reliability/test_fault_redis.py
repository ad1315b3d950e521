"""Redis restarted while traffic flows: the API keeps serving, no click is lost, the dashboard reconnects.

Recommendations, clicks, logins and dashboard pages need only Postgres; Redis
carries the Channels layer (live dashboard), the Celery broker and the training
de-duplication keys. A real Daphne runs against a private Redis that the test
kills and starts again on the same port; a WebSocket client plays the
dashboard's JavaScript (snapshot on connect, reconnect on close).
"""

import json
import time

import pytest
from websockets.sync.client import connect

from tests.reliability.stack import Traffic, clicks_missing, decide, login
from tests.support import live


def ws_open(base_url: str, session) -> object:
    """Connects like dashboard.js and returns the socket once its snapshot arrived."""
    uri = base_url.replace("http://", "ws://") + "/ws/experiments/faults/"
    cookie = "; ".join(f"{c.name}={c.value}" for c in session.cookies)
    ws = connect(uri, additional_headers={"Cookie": cookie, "Origin": base_url}, open_timeout=5, legacy=True)
    first = json.loads(ws.recv(timeout=10))
    assert first["type"] == "snapshot"
    return ws


def ws_reconnect(base_url: str, session, timeout: float = 30.0):
    return live.wait_until(lambda: ws_open(base_url, session), timeout=timeout, interval=0.5,
                           what="the dashboard socket to reconnect with a snapshot")


def ws_wait_for(ws, kind: str, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        if message.get("type") == kind:
            return message
    raise TimeoutError(f"no {kind} message in {timeout}s")


@pytest.mark.e2e
@pytest.mark.slow
def test_redis_restart_keeps_the_api_serving_and_loses_no_click(private_stack):
    daphne, url = live.start_daphne(env=private_stack.env)
    traffic = None
    try:
        admin = login(url)
        ws = ws_open(url, admin)
        traffic = Traffic(url, rate=15).start()
        live.wait_until(lambda: len(traffic.clicked()) >= 10, timeout=30, what="traffic to flow")

        private_stack.redis.stop()
        down_at = time.time()
        live.wait_until(lambda: len(traffic.statuses("click", since=down_at)) >= 30, timeout=30,
                        what="traffic during the Redis outage")
        health_down = admin.get(f"{url}/healthz", timeout=10)
        page_down = admin.get(f"{url}/dashboard/faults/", timeout=15)
        relogin_down = login(url)  # sessions live in Postgres
        private_stack.redis.start()
        up_at = time.time()

        ws.close()
        ws = ws_reconnect(url, admin)
        assert decide(admin, url, private_stack.arms["b"], 2.0) == 302
        decision = ws_wait_for(ws, "decision")
        live.wait_until(lambda: len(traffic.statuses("click", since=up_at)) >= 10, timeout=30,
                        what="traffic after the restart")
        ws.close()
    finally:
        if traffic is not None:
            traffic.stop()
        daphne.stop()

    during = traffic.statuses(since=down_at, until=up_at)
    assert set(during) <= {200, 201}, f"statuses during the outage: {sorted(set(during))}"
    assert [s for s in traffic.statuses() if s >= 500 or s == 0] == []
    assert (health_down.status_code, health_down.json()["checks"]["database"]) == (503, "ok")
    assert page_down.status_code == 200 and relogin_down.cookies.get("sessionid")
    assert decision["decision"]["action"] == "reweight"
    assert clicks_missing(private_stack, traffic.clicked()) == []
