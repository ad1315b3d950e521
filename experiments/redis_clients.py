"""One Redis client per (``settings.REDIS_URL``, timeout) for the code that talks to Redis outside Celery and
Channels: the shadow queue (``services.shadow``) and the serving health counts (``serving.health``). Each client
keeps its own connection pool; a changed ``REDIS_URL`` (tests) gets a new one."""

from __future__ import annotations

import redis
from django.conf import settings

_clients: dict[tuple[str, float], redis.Redis] = {}


def redis_for(timeout_s: float) -> redis.Redis:
    """A client whose socket operations give up after ``timeout_s`` (connecting after at most 1 s)."""
    key = (settings.REDIS_URL, timeout_s)
    client = _clients.get(key)
    if client is None:
        client = _clients[key] = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=timeout_s,
                                                      socket_connect_timeout=min(timeout_s, 1.0))
    return client
