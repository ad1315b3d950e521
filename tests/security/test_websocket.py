"""Finding 9: the dashboard WebSocket. Any slug length is a valid Channels group (a slug of 89+ characters used
to make ``group_add`` raise), and an open socket re-checks its login at least every 60 s: after a logout, an
expired session or a password change it is closed with 4401, like an anonymous one."""

import pytest
from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async as sync_to_async  # drops connections a previous test killed
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.test import Client

from experiments import consumers, realtime
from experiments.models import Arm, Experiment
from experiments.routing import websocket_urlpatterns
from tests.experiments.stats_support import fast_passwords, make_login  # noqa: F401  (autouse)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def close_consumer_connections():
    """The consumer reads on executor threads whose pooled connections outlive the test."""
    yield
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()")


@pytest.fixture
def quick_recheck(settings):
    settings.RECSITE = {**settings.RECSITE, "WS_SESSION_RECHECK_S": 0.2}


@sync_to_async
def logged_in_browser(slug: str) -> tuple[Client, str]:
    experiment = Experiment.objects.create(slug=slug, name="Watched", salt="salt-ws", status="running")
    Arm.objects.create(experiment=experiment, name="control", kind="popularity", weight=1.0)
    user = make_login(username="watcher", promoter=False)
    browser = Client()
    browser.force_login(user)
    return browser, browser.cookies[django_settings.SESSION_COOKIE_NAME].value


async def watching(slug: str) -> tuple[Client, WebsocketCommunicator]:
    """A logged-in browser and its open dashboard socket, past the snapshot."""
    browser, key = await logged_in_browser(slug)
    communicator = await socket(slug, key)
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    assert (await communicator.receive_json_from(timeout=10))["type"] == "snapshot"
    return browser, communicator


async def socket(slug: str, session_key: str | None = None) -> WebsocketCommunicator:
    headers = [(b"cookie", f"{django_settings.SESSION_COOKIE_NAME}={session_key}".encode())] if session_key else []
    return WebsocketCommunicator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)), f"/ws/experiments/{slug}/",
                                 headers=headers)


@pytest.mark.django_db
def test_every_slug_gives_a_valid_group_name():
    import re

    names = [realtime.group_name(s) for s in ("a", "x" * 88, "x" * 89, "y" * 100, "z" * 5000, "ü-slug")]

    assert all(len(n) < 100 and re.fullmatch(r"[a-zA-Z0-9\-_.]+", n) for n in names)
    assert names[0] == "experiment.a"
    assert len(set(names)) == len(names)


@pytest.mark.asyncio
async def test_a_very_long_unknown_slug_is_closed_4404_not_an_error():
    _browser, key = await logged_in_browser("short")
    communicator = await socket("s" * 150, key)

    connected, code = await communicator.connect(timeout=10)

    assert (connected, code) == (False, 4404)


@pytest.mark.asyncio
async def test_an_experiment_with_the_longest_slug_streams_live():
    slug = "L" * 100  # Experiment.slug's max_length
    _browser, key = await logged_in_browser(slug)
    communicator = await socket(slug, key)
    connected, _ = await communicator.connect(timeout=10)
    snapshot = await communicator.receive_json_from(timeout=10)

    published = await sync_to_async(realtime.publish)(slug, {"type": "decision", "probe": 1})
    event = await communicator.receive_json_from(timeout=10)
    await communicator.disconnect()

    assert connected and snapshot["type"] == "snapshot"
    assert published is True
    assert event == {"type": "decision", "probe": 1}


@pytest.mark.asyncio
async def test_a_socket_is_closed_4401_soon_after_logout(quick_recheck):
    browser, communicator = await watching("watched")

    await sync_to_async(browser.logout)()

    assert await communicator.receive_output(timeout=10) == {"type": "websocket.close", "code": 4401}


@pytest.mark.asyncio
async def test_a_socket_is_closed_when_the_session_expires(quick_recheck):
    browser, communicator = await watching("watched")
    key = browser.cookies[django_settings.SESSION_COOKIE_NAME].value

    await sync_to_async(lambda: Session.objects.filter(session_key=key).update(expire_date="2000-01-01T00:00:00Z"))()

    assert await communicator.receive_output(timeout=10) == {"type": "websocket.close", "code": 4401}


@pytest.mark.asyncio
async def test_a_password_change_elsewhere_closes_the_socket(quick_recheck):
    _browser, communicator = await watching("watched")

    def change_password():
        user = get_user_model().objects.get(username="watcher")
        user.set_password("a-new-password-42")
        user.save()

    await sync_to_async(change_password)()

    assert await communicator.receive_output(timeout=10) == {"type": "websocket.close", "code": 4401}


@pytest.mark.asyncio
async def test_a_valid_session_keeps_streaming(quick_recheck):
    _browser, communicator = await watching("watched")

    quiet = await communicator.receive_nothing(timeout=1.5)  # about seven re-checks
    await communicator.disconnect()

    assert quiet is True


@pytest.mark.asyncio
async def test_the_recheck_interval_is_capped_at_60_seconds(settings):
    settings.RECSITE = {**settings.RECSITE, "WS_SESSION_RECHECK_S": 3600}

    assert consumers._recheck_interval() == 60.0
