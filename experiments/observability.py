"""Prometheus metrics of every process of a deployment, served at ``GET /metrics`` by the web processes.

Web workers, the trainer and the light worker each write their samples to files in one directory
(prometheus-client's multiprocess mode: ``PROMETHEUS_MULTIPROC_DIR``, set by ``recsite.settings`` before this
module is imported; default ``var/metrics``). Any web process's ``/metrics`` reads the whole directory, so
one scrape of one machine covers its web workers, trainers and light worker alike. Files of processes that
are gone are removed when a process starts (:func:`metrics_dir_prune`): their counters leave the sums, which
Prometheus' ``rate()`` reads as a counter reset.

What is measured, and where (the fast path bypasses Django's middleware, so it is instrumented directly):

* ``recsite_api_requests_total{endpoint, status}`` and ``recsite_api_request_seconds{endpoint, experiment, arm}``:
  every JSON API call, timed in :func:`experiments.api.views.api_view` (the recommendation's experiment and arm
  are those that served it; other endpoints have them empty);
* ``recsite_training_steps_total{experiment, arm, status}``, ``recsite_training_examples_total{experiment, arm}``,
  ``recsite_training_step_seconds{experiment, arm}`` and ``recsite_training_lag_seconds{experiment, arm}`` (the
  oldest click a new version learnt from → that version's commit: the training part of freshness), in
  ``services.training``;
* ``recsite_stats_tick_seconds{experiment}``, in ``services.stats_tick``;
* ``recsite_queue_depth{queue}``: the lengths in Redis of the default queue and the trainers' queues (or their
  shards, ``TrainingConfig.queues``), read at scrape time.

Experiments are labelled by slug and arms by name: bounded sets, as Prometheus needs.
"""

from __future__ import annotations

import glob
import logging
import os
import re
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_FAST = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_SLOW = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)

API_REQUESTS = Counter("recsite_api_requests", "JSON API calls by endpoint and HTTP status", ["endpoint", "status"])
API_SECONDS = Histogram(
    "recsite_api_request_seconds", "JSON API handling time (validation, ranking, SQL) by endpoint and serving arm",
    ["endpoint", "experiment", "arm"], buckets=_FAST,
)
TRAINING_STEPS = Counter("recsite_training_steps", "Training steps by arm and outcome", ["experiment", "arm", "status"])
TRAINING_EXAMPLES = Counter("recsite_training_examples", "Examples learnt (accepted steps)", ["experiment", "arm"])
TRAINING_STEP_SECONDS = Histogram("recsite_training_step_seconds", "One training step, read to commit",
                                  ["experiment", "arm"], buckets=_SLOW)
TRAINING_LAG_SECONDS = Histogram(
    "recsite_training_lag_seconds", "Oldest click a version learnt from, to the commit of that version",
    ["experiment", "arm"], buckets=_SLOW,
)
SHADOW_DROPPED = Counter("recsite_shadow_dropped", "Served requests a shadow arm did not rank (its queue was full)",
                         ["experiment"])
SHADOW_DEFERRED = Counter("recsite_shadow_deferred_seconds", "Seconds the shadow drain waited for the machine to "
                          "have idle CPU (it yields to serving)")
STATS_TICK_SECONDS = Histogram("recsite_stats_tick_seconds", "One statistics tick of one experiment", ["experiment"],
                               buckets=_SLOW)

_PID_FILE = re.compile(r"_(\d+)\.db$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def metrics_dir_prune(path: str | None = None) -> int:
    """Remove the sample files of processes that no longer run; returns how many were removed."""
    path = path or os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    removed = 0
    for name in glob.glob(os.path.join(path, "*.db")):
        match = _PID_FILE.search(name)
        if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
            try:
                os.remove(name)
                removed += 1
            except FileNotFoundError:  # another process pruned it first
                pass
    return removed


class _QueueDepth:
    """``recsite_queue_depth{queue}`` read from the broker at scrape time (nothing when Redis is down)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        import redis
        from django.conf import settings

        from experiments.services.training_config import TrainingConfig

        family = GaugeMetricFamily("recsite_queue_depth", "Celery tasks waiting, per queue", labels=["queue"])
        queues = sorted({settings.CELERY_TASK_DEFAULT_QUEUE, *TrainingConfig.from_env().queues()})
        try:
            client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=0.5, socket_connect_timeout=0.5)
            with client.pipeline(transaction=False) as pipe:
                for queue in queues:
                    pipe.llen(queue)
                depths = pipe.execute()
        except redis.RedisError as exc:
            log.warning("metrics_queue_depth_unavailable error=%s", type(exc).__name__)
            return
        for queue, depth in zip(queues, depths, strict=True):
            family.add_metric([queue], float(depth))
        yield family


def metrics_text() -> bytes:
    """The exposition of every process of this machine's deployment (see module doc)."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(_QueueDepth())
    return generate_latest(registry)
