"""Database work of async API views runs on a small pool of long-lived threads.

Under Daphne, Django runs every *sync* view in a fresh thread per request
(``ThreadSensitiveContext``); Django connections are per thread, so a
persistent connection (``CONN_MAX_AGE``) is opened per request and leaked
until garbage collection — a busy API soon exhausts Postgres' connection slots
and pays a connection set-up per request. The API views are therefore async and
hand their database work to this pool: each of its ``RECSITE["API_DB_THREADS"]``
threads (default 4) keeps one persistent connection.

Requests that do not come through ASGI (Django's sync test client) run the
work in the caller's thread instead, so tests see their own transaction.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.db import connection
from django.http import HttpRequest

T = TypeVar("T")

_executor: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        with _lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(max_workers=int(settings.RECSITE.get("API_DB_THREADS", 4)),
                                               thread_name_prefix="api-db")
    return _executor


def _in_pool_thread(fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
    try:
        return fn(*args, **kwargs)
    finally:
        # What request_finished does for a request thread, without a health-check query on every call.
        if connection.errors_occurred or (connection.close_at is not None and time.monotonic() >= connection.close_at):
            connection.close_if_unusable_or_obsolete()


async def run_db(request: HttpRequest, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    if isinstance(request, ASGIRequest):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_pool(), functools.partial(_in_pool_thread, fn, args, kwargs))
    return await sync_to_async(fn, thread_sensitive=True)(*args, **kwargs)


def pool_warm(timeout: float = 30.0) -> None:
    """Opens every pool thread's persistent connection now, so that no request pays a connection set-up."""
    workers = int(settings.RECSITE.get("API_DB_THREADS", 4))
    barrier = threading.Barrier(workers, timeout=timeout)

    def connect() -> None:
        barrier.wait()  # one job per thread: none may finish before all have started
        connection.ensure_connection()

    futures = [_pool().submit(connect) for _ in range(workers)]
    for future in futures:
        future.result(timeout=timeout)
