"""Round trips through the real Redis: a Celery task to a live worker, a WebSocket event through the channel layer."""

import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.db import connections

from experiments import realtime
from experiments.models import Experiment
from experiments.routing import websocket_urlpatterns
from experiments.tasks import health_ping


@pytest.mark.e2e
def test_celery_task_round_trip_through_redis_to_a_live_worker(worker_factory):
    worker = worker_factory(queues="default")
    result = health_ping.apply_async(queue="default")
    answer = result.get(timeout=60)
    assert answer["ok"] is True
    assert answer["pid"] == worker.pid


async def receive_until(communicator: WebsocketCommunicator, predicate, limit: int = 20) -> dict:
    """The consumer may send a snapshot first; read until the message we are waiting for."""
    for _ in range(limit):
        message = await communicator.receive_json_from(timeout=10)
        if predicate(message):
            return message
    raise AssertionError("expected message never arrived")


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_websocket_round_trip_through_the_redis_channel_layer():
    # asgiref's worker thread may hold a connection from an earlier test that the server has since closed.
    await sync_to_async(connections.close_all)()
    user = await sync_to_async(get_user_model().objects.create_user)(username="watcher", password="pw-123456789")
    await sync_to_async(Experiment.objects.create)(slug="round-trip", salt="s", status="running")
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/experiments/round-trip/")
    communicator.scope["user"] = user
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    marker = uuid.uuid4().hex
    delivered = await sync_to_async(realtime.publish)("round-trip", {"type": "ping", "marker": marker})
    assert delivered is True
    message = await receive_until(communicator, lambda m: m.get("marker") == marker)
    assert message == {"type": "ping", "marker": marker}
    await communicator.disconnect()
    # The consumer's queries ran on asgiref's worker thread; close that thread's connection so the
    # test database can be dropped.
    await sync_to_async(connections.close_all)()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_websocket_refuses_anonymous_users():
    from django.contrib.auth.models import AnonymousUser

    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/experiments/round-trip/")
    communicator.scope["user"] = AnonymousUser()
    connected, code = await communicator.connect(timeout=10)
    assert connected is False
    assert code == 4401
