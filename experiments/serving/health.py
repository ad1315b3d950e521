"""Each web process counts its serving per arm, in memory, and adds the counts to Redis every few seconds.

The guardrail metrics of serving (:mod:`experiments.stats.serving_health`) need every web process of every
machine: each process keeps, per (experiment, arm), the requests, the arm's errors, a histogram of handler
times (the ``Server-Timing`` ``app`` duration) and the set of items it showed. :func:`observe` costs a lock and a
few dict and set updates on the request path, never a round trip; a daemon thread of the process
(:func:`_flusher`) empties the counts into Redis every ``RECSITE["HEALTH_FLUSH_S"]`` seconds (5), one pipeline,
into per-minute keys that expire after :data:`KEEP_S`:

* ``recsite:health:<db>:<experiment>:<arm>:<minute>`` — a hash: ``n`` requests, ``e`` errors, ``s`` items
  shown, ``b<i>`` the latency bucket counts;
* ``recsite:cover:<db>:<experiment>:<arm>:<minute>`` — a HyperLogLog of the item ids shown (``PFCOUNT`` over the
  window's keys is the distinct count of their union, within ~1 %).

While Redis is unreachable the counts of that flush are dropped (logged): these are operational figures, and
serving never waits for them. Read by :mod:`experiments.selectors.arm_health`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence

import redis
from django.conf import settings

from experiments.redis_clients import redis_for
from experiments.stats.serving_health import latency_bucket

log = logging.getLogger(__name__)

KEEP_S = 3 * 3600  # longer than any window (RECSITE["GUARDRAIL_WINDOW_MINUTES"] is at most 120)


class Trace:
    """What a recommendation request got to before it answered or failed: its experiment, the arm chosen (None
    until then, and for an interleaved slate, which no one arm made) and the item pks shown."""

    __slots__ = ("experiment_id", "arm_id", "items")

    def __init__(self) -> None:
        self.experiment_id: int | None = None
        self.arm_id: int | None = None
        self.items: Sequence[int] = ()


class _Counts:
    __slots__ = ("requests", "errors", "latency", "shown", "items")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.latency: dict[int, int] = {}
        self.shown = 0
        self.items: set[int] = set()


_lock = threading.Lock()
_flush_lock = threading.Lock()
_counts: dict[tuple[int, int], _Counts] = {}
_thread: threading.Thread | None = None


def _prefix() -> str:
    # The database name keeps two deployments (or test runs) on one Redis apart.
    return settings.DATABASES["default"]["NAME"]


def health_key(experiment_id: int, arm_id: int, minute: int) -> str:
    return f"recsite:health:{_prefix()}:{experiment_id}:{arm_id}:{minute}"


def cover_key(experiment_id: int, arm_id: int, minute: int) -> str:
    return f"recsite:cover:{_prefix()}:{experiment_id}:{arm_id}:{minute}"


def redis_client() -> redis.Redis:
    return redis_for(2.0)


def observe(*, experiment_id: int, arm_id: int, seconds: float, error: bool, items: Sequence[int] = ()) -> None:
    """Count one request the arm served (or failed) and the item ids (catalogue pks) it showed."""
    bucket = latency_bucket(seconds * 1000.0)
    with _lock:
        counts = _counts.get((experiment_id, arm_id))
        if counts is None:
            counts = _counts[(experiment_id, arm_id)] = _Counts()
        counts.requests += 1
        counts.errors += bool(error)
        counts.latency[bucket] = counts.latency.get(bucket, 0) + 1
        counts.items.update(items)
        counts.shown += len(items)
    _flusher_ensure()


def _drain() -> dict[tuple[int, int], _Counts]:
    global _counts
    with _lock:
        drained, _counts = _counts, {}
    return drained


def flush(*, now: float | None = None) -> int:
    """Adds the counts so far to Redis under the current minute; returns how many arms were written (0 when
    there was nothing, or Redis was unreachable: then the counts are dropped)."""
    with _flush_lock:
        drained = _drain()
        if not drained:
            return 0
        minute = int((time.time() if now is None else now) // 60)
        try:
            pipe = redis_client().pipeline(transaction=False)
            for (experiment_id, arm_id), counts in drained.items():
                key = health_key(experiment_id, arm_id, minute)
                pipe.hincrby(key, "n", counts.requests)
                if counts.errors:
                    pipe.hincrby(key, "e", counts.errors)
                if counts.shown:
                    pipe.hincrby(key, "s", counts.shown)
                for bucket, n in counts.latency.items():
                    pipe.hincrby(key, f"b{bucket}", n)
                pipe.expire(key, KEEP_S)
                if counts.items:
                    cover = cover_key(experiment_id, arm_id, minute)
                    pipe.pfadd(cover, *counts.items)
                    pipe.expire(cover, KEEP_S)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("serving_health_flush_failed arms=%d error=%s", len(drained), exc)
            return 0
        return len(drained)


def _flusher() -> None:
    interval = float(settings.RECSITE.get("HEALTH_FLUSH_S", 5.0))
    while True:
        time.sleep(interval)
        try:
            flush()
        except Exception:  # the thread must outlive any one failure
            log.exception("serving_health_flush_crashed")


def _flusher_ensure() -> None:
    """One flusher thread per process (a forked worker starts its own on its first request: see _forked)."""
    global _thread
    if _thread is not None:
        return
    with _lock:
        if _thread is None:
            thread = threading.Thread(target=_flusher, name="serving-health", daemon=True)
            thread.start()
            _thread = thread


def _forked() -> None:
    """In a forked child: the parent's thread did not come along, and its counts are the parent's to send."""
    global _thread, _counts, _lock, _flush_lock
    _thread, _counts = None, {}
    _lock, _flush_lock = threading.Lock(), threading.Lock()


os.register_at_fork(after_in_child=_forked)
