"""Which arms get a ``train_arm`` run queued now: the plan; ``experiments.tasks`` enqueues it.

A Redis key per arm (cleared when the run starts, expiring in case the task is
lost with a killed worker) de-duplicates runs while trainers keep up. The key
expiring does not mean the run left the queue, though: with the trainers
stalled, each expiry would queue one more run per arm. So an arm is planned
only while its queue (a Redis list named after it) holds fewer runs than the
arms routed to it: the training queue stays at most one run per arm deep
however long training is stalled.
"""

from __future__ import annotations

import logging

import redis
from django.conf import settings

from experiments.selectors.training import training_arm_ids
from experiments.services.training_config import TrainingConfig

log = logging.getLogger(__name__)


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)


def _pending_key(arm_id: int) -> str:
    # The database name keeps two deployments (or test runs) on one Redis apart.
    return f"recsite:train:pending:{settings.DATABASES['default']['NAME']}:{arm_id}"


def training_dispatch_plan(*, config: TrainingConfig | None = None, queue: str | None = None) -> list[tuple[int, str]]:
    """``(arm id, queue)`` of each run to enqueue now; each one's pending key is taken for it."""
    config = config or TrainingConfig.from_env()
    client = _redis()
    ttl = max(10, int(config.interval_s * 5))
    routes = {arm_id: queue or config.queue_for(arm_id) for arm_id in training_arm_ids()}
    room = {name: list(routes.values()).count(name) - client.llen(name) for name in set(routes.values())}
    plan = []
    for arm_id, name in routes.items():
        if room[name] <= 0:
            continue
        if client.set(_pending_key(arm_id), "1", nx=True, ex=ttl):
            room[name] -= 1
            plan.append((arm_id, name))
    full = sorted(name for name, n in room.items() if n <= 0)
    if full:
        log.info("training_dispatch_backlog queues=%s", ",".join(full))
    return plan


def training_pending_clear(*, arm_id: int) -> None:
    try:
        _redis().delete(_pending_key(arm_id))
    except Exception as exc:
        log.warning("train_pending_clear_failed arm=%s error=%s", arm_id, exc)
