"""The dashboard socket on the real Redis channel layer: snapshot on connect, then events.

Folding the events into the first snapshot gives exactly what a client connecting
afterwards receives as its snapshot (history thinning and chart updates included).
"""

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from experiments.routing import websocket_urlpatterns
from experiments.selectors import dashboard as dashboard_selectors
from experiments.services import stats_tick as tick_services
from tests.experiments.stats_support import (
    add_rollup,
    fast_passwords,  # noqa: F401  (autouse)
    make_experiment,
    make_login,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


@pytest.fixture(autouse=True)
def close_consumer_connections():
    """The consumer reads on executor threads whose pooled connections outlive the test."""
    yield
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@sync_to_async
def setup_experiment():
    experiment, arms = make_experiment(slug="live-socket", arms=("control", "treat", "third"))
    add_rollup(arm=arms[0], impressions=[10, 12, 9], clicks=[1, 2, 0])
    tick_services.stats_tick(experiment_id=experiment.id)
    return experiment, arms, make_login(username="watcher", promoter=False)


@sync_to_async
def traffic_and_tick(experiment, arm, i: int) -> dict:
    add_rollup(arm=arm, impressions=[5 + i, 3], clicks=[i, 1], prefix=f"t{i}")
    return tick_services.stats_tick(experiment_id=experiment.id)


async def connect(user, slug: str) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/experiments/{slug}/")
    communicator.scope["user"] = user
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    return communicator


async def test_a_client_gets_the_full_snapshot_on_connect():
    experiment, arms, user = await setup_experiment()
    expected = await sync_to_async(dashboard_selectors.dashboard_state)(experiment=experiment)

    communicator = await connect(user, "live-socket")
    first = await communicator.receive_json_from(timeout=10)
    await communicator.disconnect()

    assert first == expected
    assert first["type"] == "snapshot"
    assert first["stats"]["report"]["arms"]["control"]["impressions"] == 31
    assert set(first["figures"]) == {"ctr", "traffic", "p_best", "learning"}


async def test_snapshot_plus_events_equals_a_fresh_snapshot():
    experiment, arms, user = await setup_experiment()
    communicator = await connect(user, "live-socket")
    state = await communicator.receive_json_from(timeout=10)

    published = [await traffic_and_tick(experiment, arms[1 + i % 2], i) for i in range(5)]
    received = [await communicator.receive_json_from(timeout=10) for _ in published]
    for event in received:
        state = dashboard_selectors.dashboard_state_apply(state, event)
    fresh_client = await connect(user, "live-socket")
    fresh = await fresh_client.receive_json_from(timeout=10)
    await communicator.disconnect()
    await fresh_client.disconnect()

    assert [e["stats"]["seq"] for e in received] == [2, 3, 4, 5, 6]
    assert received == published
    assert state == fresh
    assert fresh["stats"]["report"]["arms"]["treat"]["impressions"] == sum(5 + i + 3 for i in (0, 2, 4))


async def test_an_unknown_experiment_closes_the_socket():
    _, _, user = await setup_experiment()
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/experiments/no-such/")
    communicator.scope["user"] = user

    connected, code = await communicator.connect(timeout=10)

    assert (connected, code) == (False, 4404)
