"""Checkpoint storage: compaction, retention, and the announcement of a new version after commit."""

from __future__ import annotations

import pytest

from experiments.models import ModelCheckpoint
from experiments.services import checkpoints, training
from experiments.services.training_config import TrainingConfig
from experiments.serving.versions import MODEL_VERSION_CHANNEL
from tests.support.training_world import traffic_log, world_make

pytestmark = pytest.mark.django_db

CONFIG = TrainingConfig(batch_rows=10_000, budget_s=60.0)


def test_retention_keeps_the_last_n_and_every_kth_version():
    world = world_make(seed=7)
    cp = ModelCheckpoint.objects.bulk_create(
        [ModelCheckpoint(arm=world.arm, version=v, state=b"x", cursor=v) for v in range(1, 36)]
    )
    assert len(cp) == 35

    deleted = checkpoints.checkpoint_retention_apply(config=TrainingConfig(keep_last=5, keep_every=10))

    kept = sorted(ModelCheckpoint.objects.filter(arm=world.arm).values_list("version", flat=True))
    assert kept == [10, 20, 30, 31, 32, 33, 34, 35]
    assert deleted == 35 - len(kept)


def test_a_compacted_checkpoint_restores_to_the_same_arm():
    from models.registry import arm_from_bytes, make_arm

    model = make_arm("popularity", {}, 3)
    raw = model.to_bytes()

    packed = checkpoints.state_compact(raw)

    assert len(packed) < len(raw) / 10
    assert arm_from_bytes(packed).to_bytes() == raw


def test_a_new_version_is_announced_to_serving_after_commit(settings, django_capture_on_commit_callbacks):
    import json
    import time

    import redis

    world = world_make(seed=13)
    traffic_log(world, requests=5, seed=1)
    pubsub = redis.Redis.from_url(settings.REDIS_URL).pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(MODEL_VERSION_CHANNEL)
    try:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            training.arm_train(arm_id=world.arm.id, config=CONFIG)
        deadline = time.monotonic() + 10
        seen = []
        while time.monotonic() < deadline and {"arm_id": world.arm.id, "version": 1} not in seen:
            message = pubsub.get_message(timeout=0.5)
            if message is not None:
                seen.append(json.loads(message["data"]))
    finally:
        pubsub.close()

    assert len(callbacks) == 1
    assert {"arm_id": world.arm.id, "version": 1} in seen
