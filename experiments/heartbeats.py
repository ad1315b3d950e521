"""Check-ins: each background part of the stack says it is alive, so a missing one is visible.

The stack needs a trainer (a Celery worker on a ``training`` queue), a light worker (queue ``default``:
training dispatch, stats ticks, retention) and beat. Each writes a Redis key with a time-to-live every
``CHECKIN_INTERVAL_S``; a part whose key has expired (nothing for ``CHECKIN_STALE_S``) has not checked
in recently and is named by ``/healthz`` (``degraded``, still 200: the web process itself is alive) and
by the dashboard's banner.

* Workers check in from a thread started when the worker is ready (``worker_ready``), once per part
  its queues make it: a trainer busy on a long update still checks in, a process that died does not.
* Beat checks in from its own scheduler loop (:class:`CheckinScheduler`, ``CELERY_BEAT_SCHEDULER``), so
  a beat that stopped is named even when the workers that would run its tasks are up — and a light
  worker that is down is named even when beat is up.

Keys live under the Channels prefix, so test runs and demos on one Redis never see each other's parts.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time

import redis
from celery.beat import PersistentScheduler
from django.conf import settings

log = logging.getLogger(__name__)

PARTS = ("trainer", "light worker", "beat")


def _interval_s() -> float:
    return float(settings.RECSITE.get("CHECKIN_INTERVAL_S", 5.0))


def _stale_s() -> float:
    return float(settings.RECSITE.get("CHECKIN_STALE_S", 20.0))


def _key(part: str) -> str:
    prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"].get("prefix", "recsite")
    return f"{prefix}:checkin:{part.replace(' ', '_')}"


def _client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)


def part_checkin(*, part: str, client: redis.Redis | None = None) -> None:
    """Records that ``part`` is alive now (host, pid, time); the record expires after ``CHECKIN_STALE_S``."""
    record = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "at": time.time()})
    (client or _client()).set(_key(part), record, px=int(_stale_s() * 1000))


def parts_missing() -> list[str]:
    """The parts that have not checked in within ``CHECKIN_STALE_S``, in :data:`PARTS` order.

    Raises redis errors: a Redis that is down is ``/healthz``'s own check.
    """
    client = _client()
    try:
        values = client.mget([_key(part) for part in PARTS])
    finally:
        client.close()
    return [part for part, value in zip(PARTS, values, strict=True) if value is None]


def worker_parts(queues: list[str]) -> list[str]:
    parts = []
    if any(name.startswith("training") for name in queues):
        parts.append("trainer")
    if "default" in queues:
        parts.append("light worker")
    return parts


def checkin_thread_start(*, parts: list[str]) -> threading.Thread | None:
    """Checks ``parts`` in now and then every ``CHECKIN_INTERVAL_S`` from a daemon thread."""
    if not parts:
        return None

    def run() -> None:
        client = _client()
        while True:
            try:
                for part in parts:
                    part_checkin(part=part, client=client)
            except redis.RedisError as exc:  # Redis down: the worker cannot work either; retry
                log.warning("checkin_failed parts=%s error=%s", ",".join(parts), type(exc).__name__)
            time.sleep(_interval_s())

    thread = threading.Thread(target=run, name="checkin", daemon=True)
    thread.start()
    log.info("checkin_started parts=%s interval_s=%s", ",".join(p.replace(" ", "_") for p in parts), _interval_s())
    return thread


class CheckinScheduler(PersistentScheduler):
    """Celery beat's own scheduler, which also checks beat in from its loop (at least every interval)."""

    _last_checkin = 0.0

    def tick(self, *args, **kwargs) -> float:
        delay = super().tick(*args, **kwargs)
        now = time.monotonic()
        if now - self._last_checkin >= _interval_s():
            try:
                part_checkin(part="beat")
                self._last_checkin = now
            except redis.RedisError as exc:
                log.warning("checkin_failed parts=beat error=%s", type(exc).__name__)
        return min(delay, _interval_s())
