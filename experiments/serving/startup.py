"""A serving process's start: warm everything before ``/healthz`` says ready.

:func:`warm_on_start` wraps the ASGI application. When the server starts (the ASGI lifespan start-up
under uvicorn; the first request under Daphne, which has no lifespan — the probe's first
``/healthz``), it starts the serving cache's thread, which builds or loads every arm and warms each
one (``experiments.serving.warmup``) before publishing it, and :func:`process_warm`, the other
one-off costs of a first request: the API views' import and each database thread's persistent
connection. ``/healthz`` answers 503 ``{"status": "warming"}`` until :func:`serving_ready`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable

from django.conf import settings

from experiments.serving.cache import serving_cache

log = logging.getLogger(__name__)

# A lifespan start-up waits at most this long for the warm-up before it lets the server accept connections.
LIFESPAN_WARM_TIMEOUT_S = 180.0

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]

_started = threading.Event()
_process_warmed = threading.Event()


def process_warm() -> None:
    """The first request's other one-off costs: the API views' import and each database thread's connection."""
    import experiments.api.views  # noqa: F401
    from experiments.api.dbpool import pool_warm

    pool_warm()


def _process_warm_quietly() -> None:
    try:
        process_warm()
        _process_warmed.set()
    except Exception as exc:  # a database that is down is /healthz's to report; the next start retries
        log.warning("process_warm_failed error=%s", f"{type(exc).__name__}: {exc}".strip())
        _started.clear()


def serving_start() -> None:
    """Starts the serving cache's thread (it loads and warms every arm) and the process warm-up, once."""
    if _started.is_set() or settings.RECSITE.get("SERVING_REFRESH", "background") != "background":
        return
    _started.set()
    serving_cache.start()
    threading.Thread(target=_process_warm_quietly, name="process-warm", daemon=True).start()


def serving_warming() -> bool:
    """True while this process was started as a server and has not yet warmed every arm.

    A process that never started serving (management commands, Django's test client) is not warming.
    """
    if not _started.is_set() and not _process_warmed.is_set():
        return False
    return not (serving_cache.ready and _process_warmed.is_set())


async def _warm_wait() -> None:
    # A server with a lifespan (uvicorn) accepts from its socket only after start-up completes: a worker that
    # is still warming takes no connection its warm siblings could serve.
    # A database that is down ends the wait: the process then answers, and /healthz says what is down.
    deadline = time.monotonic() + LIFESPAN_WARM_TIMEOUT_S
    while serving_warming() and not serving_cache.failing and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    if serving_warming():
        log.warning("serving_warm_timeout seconds=%.0f", LIFESPAN_WARM_TIMEOUT_S)


def warm_on_start(app: ASGIApp) -> ASGIApp:
    """Starts the warm-up with the server: at its ASGI lifespan start-up (which then waits for it), else on the
    first HTTP request."""

    async def application(scope: dict, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    serving_start()
                    await _warm_wait()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] == "http" and not _started.is_set():
            serving_start()
        return await app(scope, receive, send)

    return application
