"""One serving process per core on one port (recsite/gunicorn_conf.py): two uvicorn workers behind one socket.

Each worker is found by the connection it holds (Linux /proc), so the test proves per process that it serves the
newest checkpoint (each polls on its own) and that a dashboard WebSocket on it gets the live stats events (the
Channels layer on Redis carries them to whichever process holds the socket).
"""

from __future__ import annotations

import http.client
import json
import time

import pytest
import requests
from django.test import Client
from websockets.sync.client import connect

from experiments.models import ModelCheckpoint
from experiments.services.stats_tick import stats_tick
from experiments.serving.arms import arm_build
from tests.experiments.stats_support import PASSWORD, make_login
from tests.support import live
from tests.support.serving import catalogue_make, experiment_make

pytestmark = [pytest.mark.e2e]

SLUG = "multi"


def _one_per_worker(make, port: int, workers: list[int], attempts: int = 200) -> dict[int, object]:
    """Opens connections until one is held by each worker; closes the spare ones."""
    held: dict[int, object] = {}
    for _ in range(attempts):
        conn, client_port = make()
        owner = live.connection_owner(server_port=port, client_port=client_port, pids=workers)
        if owner is not None and owner not in held:
            held[owner] = conn
        else:
            conn.close()
        if len(held) == len(workers):
            return held
    raise AssertionError(f"connections reached only workers {sorted(held)} of {workers}")


def _http(port: int):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/api/v1/ping")
    conn.getresponse().read()  # accepted and answered: the connection now belongs to one worker
    return conn, conn.sock.getsockname()[1]


def _recommend(conn: http.client.HTTPConnection, user: str) -> dict:
    conn.request("POST", "/api/v1/recommendations", body=json.dumps({"user_id": user, "k": 3}),
                 headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    body = json.loads(response.read())
    assert response.status == 200, body
    return body


def _ws(url: str, cookie: str):
    def make():
        ws = connect(url.replace("http://", "ws://") + f"/ws/experiments/{SLUG}/",
                     additional_headers={"Cookie": cookie, "Origin": url}, open_timeout=10, legacy=True)
        assert json.loads(ws.recv(timeout=10))["type"] == "snapshot"
        return ws, ws.socket.getsockname()[1]

    return make


def _wait_for(ws, kind: str, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        if message.get("type") == kind:
            return message
    raise TimeoutError(f"no {kind} message in {timeout}s")


def test_two_workers_on_one_port_each_serve_the_newest_version_and_deliver_dashboard_events(transactional_db):
    catalogue_make(n=20)
    experiment = experiment_make(slug=SLUG, arms=(("only", "popularity", 1.0),))
    arm = experiment.arms.get()
    make_login(username="analyst", promoter=False)
    browser = Client()
    assert browser.login(username="analyst", password=PASSWORD)
    cookie = f"sessionid={browser.cookies['sessionid'].value}"

    server, url = live.start_gunicorn(workers=2)
    port = int(url.rsplit(":", 1)[1])
    try:
        workers = live.child_pids(server.pid)
        assert len(workers) == 2
        conns = _one_per_worker(lambda: _http(port), port, workers)
        sockets = _one_per_worker(_ws(url, cookie), port, workers)

        assert {pid: _recommend(conn, f"u-{pid}")["model_version"] for pid, conn in conns.items()} == dict.fromkeys(
            workers, 0)
        ModelCheckpoint.objects.create(arm=arm, version=1,
                                       state=arm_build(kind="popularity", params={}, arm_id=arm.id).to_bytes())
        for pid, conn in conns.items():
            live.wait_until(lambda c=conn, p=pid: _recommend(c, f"v-{p}")["model_version"] == 1, timeout=5,
                            interval=0.1, what=f"worker {pid} serving version 1")

        published = stats_tick(experiment_id=experiment.id)
        events = {pid: _wait_for(ws, "stats") for pid, ws in sockets.items()}
        assert {pid: event["stats"]["seq"] for pid, event in events.items()} == dict.fromkeys(
            workers, published["stats"]["seq"])
        for conn in conns.values():
            conn.close()
        for ws in sockets.values():
            ws.close()
        assert requests.get(f"{url}/healthz", timeout=10).status_code == 200
    finally:
        server.stop()
