"""The model-version notification between training and serving: a Redis pub/sub channel.

Training publishes ``{"arm_id", "version"}`` on :data:`MODEL_VERSION_CHANNEL`
after each checkpoint commits (:func:`model_version_notify`); a committed change
of traffic or of the catalogue publishes ``{"config": …}`` on the same channel
(:func:`serving_config_notify`), so promotions and new items reach serving at
once too. Each serving
process runs one :class:`VersionSubscriber`: a daemon thread, started lazily by
the first request that needs the serving cache, that listens on the channel and
wakes the cache's refresh at once (:mod:`experiments.serving.cache`), which
then fetches only the deltas after the version it serves. Polling the database
stays as the fallback: slow while subscribed, fast while Redis is unreachable.

Nothing here depends on the server: it works the same under Daphne, uvicorn or
gunicorn workers, a Celery worker or a management command. A forked child
(pre-fork workers) notices that the thread is not its own and starts its own.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable

import redis
from django.conf import settings

log = logging.getLogger(__name__)

MODEL_VERSION_CHANNEL = "recsite:model_version"
# Back-off between reconnection attempts while Redis is down.
RECONNECT_S = 1.0


_publisher: tuple[int, str, redis.Redis] | None = None  # (pid, url, client): one connection pool per process


def _publisher_client() -> redis.Redis:
    global _publisher
    if _publisher is None or _publisher[0] != os.getpid() or _publisher[1] != settings.REDIS_URL:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
        _publisher = (os.getpid(), settings.REDIS_URL, client)
    return _publisher[2]


def model_version_notify(*, arm_id: int, version: int) -> bool:
    """Publishes a committed version; False (logged) when Redis is down. Never raises."""
    try:
        _publisher_client().publish(MODEL_VERSION_CHANNEL, json.dumps({"arm_id": arm_id, "version": version}))
    except Exception as exc:
        log.warning("model_version_publish_failed arm=%s version=%s error=%s", arm_id, version, exc)
        return False
    return True


def serving_config_notify(*, what: str) -> bool:
    """After commit of a change serving must see at once (traffic, experiments, arms, the catalogue):
    every serving process refreshes now rather than at its fallback poll. Never raises."""
    try:
        _publisher_client().publish(MODEL_VERSION_CHANNEL, json.dumps({"config": what}))
    except Exception as exc:
        log.warning("serving_config_publish_failed what=%s error=%s", what, exc)
        return False
    return True


def _parse(data: bytes | str) -> tuple[int, int] | None:
    """(arm_id, version) of a version announcement; (0, 0) for a configuration change; None if garbled."""
    try:
        body = json.loads(data)
        if "config" in body:
            return 0, 0
        return int(body["arm_id"]), int(body["version"])
    except (ValueError, TypeError, KeyError):
        return None


class VersionSubscriber:
    """Calls ``on_version(arm_id, version)`` for each announcement (``(0, 0)``: the configuration changed),
    and ``on_connect()`` after each (re)subscribe.

    ``on_connect`` lets the owner catch up on versions announced while it was not
    listening. Callbacks run on the subscriber's thread and must be quick.
    """

    def __init__(self, on_version: Callable[[int, int], None], on_connect: Callable[[], None],
                 channel: str = MODEL_VERSION_CHANNEL) -> None:
        self._on_version = on_version
        self._on_connect = on_connect
        self.channel = channel
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._stop = threading.Event()
        self._connected = threading.Event()
        self.received = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set() and self._pid == os.getpid()

    def start(self) -> None:
        """Start listening in this process (a no-op if already listening here). Safe after fork."""
        with self._lock:
            if self._pid == os.getpid() and self._thread is not None and self._thread.is_alive():
                return
            # In a forked child the parent's thread does not exist: start afresh.
            self._pid = os.getpid()
            self._stop = threading.Event()
            self._connected = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(self._stop, self._connected),
                                            name="model-version-subscriber", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and self._pid == os.getpid():
            thread.join(timeout)
        self._thread = None

    def _run(self, stop: threading.Event, connected: threading.Event) -> None:
        while not stop.is_set():
            pubsub = None
            try:
                client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=10,
                                              socket_keepalive=True, health_check_interval=5)
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.channel)
                connected.set()
                log.info("model_version_subscribed channel=%s pid=%s", self.channel, os.getpid())
                self._on_connect()
                while not stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    parsed = _parse(message["data"])
                    if parsed is not None:
                        self.received += 1
                        self._on_version(*parsed)
            except Exception as exc:  # Redis down or restarting: poll fast until it is back
                if connected.is_set():
                    log.warning("model_version_subscription_lost error=%s", f"{type(exc).__name__}: {exc}".strip())
                connected.clear()
                stop.wait(RECONNECT_S)
            finally:
                connected.clear()
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:  # already broken
                        pass
        log.info("model_version_unsubscribed pid=%s", os.getpid())


def wait_connected(subscriber: VersionSubscriber, timeout: float) -> bool:
    """Test helper: True once ``subscriber`` is listening (False after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if subscriber.connected:
            return True
        time.sleep(0.02)
    return False
