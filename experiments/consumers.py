"""WebSocket interface of the live dashboard: one Channels group per experiment.

Only ``experiments.realtime`` sends to these groups; this consumer relays what it gets.
On connect it sends the full dashboard state (latest stats + chart history), then
every event; a client that folds the events into the snapshot holds what a fresh
snapshot would give (``selectors.dashboard.dashboard_state_apply``).

The login is checked on connect and again every ``RECSITE["WS_SESSION_RECHECK_S"]`` seconds
(at most 60): a socket whose session was logged out, expired, or invalidated by a password
change is closed with code 4401, like an anonymous one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from importlib import import_module

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, load_backend
from django.utils.crypto import constant_time_compare

from experiments import realtime
from experiments.models import Experiment
from experiments.selectors import dashboard as dashboard_selectors

log = logging.getLogger(__name__)

MAX_RECHECK_S = 60.0


@database_sync_to_async
def _snapshot(slug: str) -> dict | None:
    experiment = Experiment.objects.filter(slug=slug).first()
    if experiment is None:
        return None
    return dashboard_selectors.dashboard_state(experiment=experiment)


@database_sync_to_async
def session_still_valid(session_key: str | None, user_pk) -> bool:
    """Whether the session still logs in the same active user; read-only (unlike ``auth.get_user``,
    it never cycles or flushes the session the browser holds)."""
    if not session_key:
        return False
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key=session_key)
    data = store.load()  # {} when the session was deleted (logout) or has expired
    backend_path = data.get(BACKEND_SESSION_KEY)
    if str(data.get(SESSION_KEY)) != str(user_pk) or backend_path not in settings.AUTHENTICATION_BACKENDS:
        return False
    user = load_backend(backend_path).get_user(data.get(SESSION_KEY))
    if user is None or not getattr(user, "is_active", True):
        return False
    given = data.get(HASH_SESSION_KEY) or ""
    hashes = [user.get_session_auth_hash(), *user.get_session_auth_fallback_hash()]
    return any(constant_time_compare(given, expected) for expected in hashes)


def _recheck_interval() -> float:
    return min(float(settings.RECSITE.get("WS_SESSION_RECHECK_S", 30.0)), MAX_RECHECK_S)


class ExperimentConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.slug = self.scope["url_route"]["kwargs"]["slug"]
        self.group = realtime.group_name(self.slug)
        # Join before reading the snapshot: an event published in between is then
        # delivered after the snapshot instead of being lost.
        await self.channel_layer.group_add(self.group, self.channel_name)
        snapshot = await _snapshot(self.slug)
        if snapshot is None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
            await self.close(code=4404)
            return
        await self.accept()
        self._watch = asyncio.ensure_future(self._session_watch(user.pk))
        await self.send_json(snapshot)

    async def _session_watch(self, user_pk) -> None:
        session = self.scope.get("session")
        session_key = getattr(session, "session_key", None)
        while True:
            await asyncio.sleep(_recheck_interval())
            try:
                valid = await session_still_valid(session_key, user_pk)
            except Exception:  # the database is down: keep streaming, check again next round
                log.warning("ws_session_recheck_failed slug=%s", self.slug, exc_info=True)
                continue
            if not valid:
                log.info("ws_session_ended slug=%s user=%s", self.slug, user_pk)
                await self.close(code=4401)
                return

    async def disconnect(self, code: int) -> None:
        watch = getattr(self, "_watch", None)
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watch
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def experiment_event(self, event: dict) -> None:
        await self.send_json(event["payload"])
