"""The training service against the real database: cursors, batches, FNW rows, locks, the worker's model."""

from __future__ import annotations

import psycopg2
import pytest
from django.db import connection

from experiments.models import Arm, ModelCheckpoint
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

    run = training.arm_train(arm_id=world.arm.id, config=TrainingConfig(batch_rows=40, budget_s=60.0, fold_batches=1))

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
