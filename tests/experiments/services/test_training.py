"""The training service against the real database: cursors, batches, FNW rows, locks, retention, rollback."""

from __future__ import annotations

import psycopg2
import pytest
from django.db import connection

from experiments.models import Arm, Decision, ModelCheckpoint
from experiments.services import training
from experiments.services.training_config import TrainingConfig
from tests.support.training_world import clicks_add, traffic_log, world_make

pytestmark = pytest.mark.django_db

CONFIG = TrainingConfig(batch_rows=10_000, budget_s=60.0)


def _versions(arm) -> list[ModelCheckpoint]:
    return list(ModelCheckpoint.objects.filter(arm=arm).order_by("version").defer("state"))


def test_a_run_trains_every_new_impression_and_click_once_into_one_version():
    world = world_make(seed=1)
    imps, clicks = traffic_log(world, requests=40, k=5, seed=2)

    run = training.arm_train(arm_id=world.arm.id, config=CONFIG)

    (v1,) = _versions(world.arm)
    assert run.status == "ok"
    assert run.versions == [1]
    assert (v1.version, v1.cursor, v1.click_cursor) == (1, max(imps), max(clicks))
    assert v1.examples_seen == len(imps) + len(clicks)
    assert (v1.metrics["n_impressions"], v1.metrics["n_clicks"]) == (len(imps), len(clicks))
    assert v1.metrics["accepted"] is True
    assert 0 < v1.metrics["logloss_before"] < 5


def test_a_run_with_nothing_new_writes_no_version():
    world = world_make(seed=2)
    traffic_log(world, requests=10, seed=3)
    training.arm_train(arm_id=world.arm.id, config=CONFIG)

    run = training.arm_train(arm_id=world.arm.id, config=CONFIG)

    assert [s.status for s in run.steps] == ["idle"]
    assert [v.version for v in _versions(world.arm)] == [1]


def test_a_backlog_is_taken_in_bounded_mini_batches_with_chained_cursors():
    world = world_make(seed=3)
    imps, clicks = traffic_log(world, requests=30, k=5, seed=4)  # 150 impressions

    run = training.arm_train(arm_id=world.arm.id, config=TrainingConfig(batch_rows=40, budget_s=60.0))

    versions = _versions(world.arm)
    assert run.versions == [1, 2, 3, 4]
    assert [v.metrics["n_impressions"] for v in versions] == [40, 40, 40, 30]
    assert all(v.metrics["n_clicks"] <= 40 for v in versions)
    assert [v.metrics["imp_from"] for v in versions] == [0] + [v.cursor for v in versions[:-1]]
    assert [v.metrics["click_from"] for v in versions] == [0] + [v.click_cursor for v in versions[:-1]]
    assert versions[-1].cursor == max(imps)
    assert sum(v.metrics["n_clicks"] for v in versions) == len(clicks)
    assert versions[-1].examples_seen == len(imps) + len(clicks)


def test_a_click_after_its_impression_was_trained_is_folded_in_as_a_positive():
    world = world_make(seed=4)
    imps, _ = traffic_log(world, requests=10, k=5, seed=5, click=False)
    training.arm_train(arm_id=world.arm.id, config=CONFIG)
    new_clicks = clicks_add(imps[:3])
    clicks_add(imps[3:5], late=True)

    training.arm_train(arm_id=world.arm.id, config=CONFIG)

    v1, v2 = _versions(world.arm)
    assert (v2.metrics["n_impressions"], v2.metrics["n_clicks"]) == (0, 3)
    assert v2.click_cursor >= max(new_clicks)
    assert v2.cursor == v1.cursor
    assert v2.examples_seen == len(imps) + 3


def test_a_second_run_exits_at_once_while_the_arm_lock_is_held():
    world = world_make(seed=5)
    traffic_log(world, requests=10, seed=6)
    db = connection.settings_dict
    other = psycopg2.connect(dbname=db["NAME"], host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"])
    try:
        with other.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", [training.lock_key(world.arm.id)])

        run = training.arm_train(arm_id=world.arm.id, config=CONFIG)

        assert run.status == "locked"
        assert _versions(world.arm) == []
    finally:
        other.close()


def test_the_worker_reloads_its_model_when_another_process_wrote_a_newer_version():
    world = world_make(seed=6)
    traffic_log(world, requests=10, seed=7)
    training.arm_train(arm_id=world.arm.id, config=CONFIG)
    stale = training._models[world.arm.id]
    training._models[world.arm.id] = (stale[0] - 1, stale[1])  # as if this worker had missed version 1
    traffic_log(world, requests=10, seed=8)

    training.arm_train(arm_id=world.arm.id, config=CONFIG)

    assert training._models[world.arm.id][0] == 2
    assert [v.version for v in _versions(world.arm)] == [1, 2]


def test_retention_keeps_the_last_n_and_every_kth_version():
    world = world_make(seed=7)
    cp = ModelCheckpoint.objects.bulk_create(
        [ModelCheckpoint(arm=world.arm, version=v, state=b"x", cursor=v) for v in range(1, 36)]
    )
    assert len(cp) == 35

    deleted = training.checkpoint_retention_apply(config=TrainingConfig(keep_last=5, keep_every=10))

    kept = sorted(ModelCheckpoint.objects.filter(arm=world.arm).values_list("version", flat=True))
    assert kept == [10, 20, 30, 31, 32, 33, 34, 35]
    assert deleted == 35 - len(kept)


def test_an_admin_rolls_an_arm_back_to_a_kept_checkpoint(django_user_model):
    from django.contrib.auth.models import Permission

    world = world_make(seed=8)
    traffic_log(world, requests=10, seed=9)
    training.arm_train(arm_id=world.arm.id, config=CONFIG)
    traffic_log(world, requests=10, seed=10)
    training.arm_train(arm_id=world.arm.id, config=CONFIG)
    Arm.objects.filter(pk=world.arm.id).update(health="unhealthy", health_reason="bad batch")
    admin = django_user_model.objects.create_user("boss", password="x", is_staff=True)
    admin.user_permissions.add(Permission.objects.get(codename="promote_arm"))
    admin = django_user_model.objects.get(pk=admin.pk)

    new = training.arm_rollback_to_checkpoint(arm_id=world.arm.id, version=1, user=admin, reason="v2 looks off")

    v1, v2, v3 = ModelCheckpoint.objects.filter(arm=world.arm).order_by("version")
    assert new.version == 3
    assert bytes(v3.state) == bytes(v1.state)
    assert (v3.cursor, v3.click_cursor) == (v2.cursor, v2.click_cursor)
    assert v3.metrics["rollback_to"] == 1
    arm = Arm.objects.get(pk=world.arm.id)
    assert (arm.health, arm.health_reason) == ("healthy", "")
    decision = Decision.objects.get(arm=arm)
    assert decision.action == "checkpoint_rollback"
    assert decision.previous_state["version"] == 2


def test_rollback_is_refused_without_the_permission(django_user_model):
    from experiments.services.decisions import DecisionError

    world = world_make(seed=9)
    traffic_log(world, requests=5, seed=9)
    training.arm_train(arm_id=world.arm.id, config=CONFIG)
    analyst = django_user_model.objects.create_user("analyst", password="x", is_staff=True)

    with pytest.raises(DecisionError) as err:
        training.arm_rollback_to_checkpoint(arm_id=world.arm.id, version=1, user=analyst, reason="r")

    assert err.value.status == 403
    assert ModelCheckpoint.objects.filter(arm=world.arm).count() == 1


def test_dispatch_queues_at_most_one_run_per_active_arm(settings):
    import redis

    world = world_make(seed=10, kinds=("popularity", "popularity", "popularity"))
    Arm.objects.filter(pk=world.arms[2].id).update(status="paused")
    client = redis.Redis.from_url(settings.REDIS_URL)
    queue = f"training-test-{world.experiment.slug}"
    for arm in world.arms:
        client.delete(training._pending_key(arm.id))
    try:
        first = training.training_dispatch(queue=queue)
        second = training.training_dispatch(queue=queue)
        client.rpop(queue)  # a worker takes arm 0's run (the oldest) off the queue and starts it
        training.training_pending_clear(arm_id=world.arms[0].id)
        third = training.training_dispatch(queue=queue)

        assert sorted(first) == sorted(a.id for a in world.arms[:2])
        assert second == []
        assert third == [world.arms[0].id]
        assert client.llen(queue) == 2
    finally:
        client.delete(queue, *[training._pending_key(a.id) for a in world.arms])


def test_a_compacted_checkpoint_restores_to_the_same_arm():
    from models.base import Arm as ModelArm
    from models.registry import make_arm

    model = make_arm("popularity", {}, 3)
    raw = model.to_bytes()

    packed = training.state_compact(raw)

    assert len(packed) < len(raw) / 10
    assert ModelArm.from_bytes(packed).to_bytes() == raw


def test_a_training_error_keeps_the_cursors_and_shows_on_the_arm():
    world = world_make(seed=11)
    Arm.objects.filter(pk=world.arm.id).update(params={"no_such_param": 1})
    traffic_log(world, requests=5, seed=1)

    with pytest.raises(ValueError):
        training.arm_train(arm_id=world.arm.id, config=CONFIG)

    arm = Arm.objects.get(pk=world.arm.id)
    assert arm.health == "unhealthy"
    assert arm.health_reason.startswith("training error: ValueError")
    assert _versions(world.arm) == []


def test_warmup_loads_every_trainable_arm_into_the_worker():
    world = world_make(seed=12, kinds=("popularity", "ftrl_logreg"))
    training._models.clear()

    warmed = training.training_warmup()

    assert sorted(warmed) == sorted(a.id for a in world.arms)
    assert {training._models[a.id][0] for a in world.arms} == {0}


def test_a_new_version_is_announced_to_serving_after_commit(settings, django_capture_on_commit_callbacks):
    import json
    import time

    import redis

    world = world_make(seed=13)
    traffic_log(world, requests=5, seed=1)
    pubsub = redis.Redis.from_url(settings.REDIS_URL).pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(training.MODEL_VERSION_CHANNEL)
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
