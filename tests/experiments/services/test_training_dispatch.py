"""Queueing training runs: the dispatcher plans one run per active arm, the task enqueues it."""

from __future__ import annotations

import pytest

from experiments import tasks
from experiments.models import Arm
from experiments.services import training_dispatch
from tests.support.training_world import world_make

pytestmark = pytest.mark.django_db


def test_dispatch_queues_at_most_one_run_per_active_arm(settings):
    import redis

    world = world_make(seed=10, kinds=("popularity", "popularity", "popularity"))
    Arm.objects.filter(pk=world.arms[2].id).update(status="paused")
    client = redis.Redis.from_url(settings.REDIS_URL)
    queue = f"training-test-{world.experiment.slug}"
    for arm in world.arms:
        client.delete(training_dispatch._pending_key(arm.id))
    try:
        first = tasks.training_dispatch(queue=queue)
        second = tasks.training_dispatch(queue=queue)
        client.rpop(queue)  # a worker takes arm 0's run (the oldest) off the queue and starts it
        training_dispatch.training_pending_clear(arm_id=world.arms[0].id)
        third = tasks.training_dispatch(queue=queue)

        assert sorted(first) == sorted(a.id for a in world.arms[:2])
        assert second == []
        assert third == [world.arms[0].id]
        assert client.llen(queue) == 2
    finally:
        client.delete(queue, *[training_dispatch._pending_key(a.id) for a in world.arms])
