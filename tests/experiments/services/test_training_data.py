"""Reading past the cursors: a row committed out of id order is waited for, never skipped."""

from __future__ import annotations

import dataclasses

import psycopg2
import pytest
from django.db import connection

from experiments.models import ModelCheckpoint
from experiments.services import training
from experiments.services.training_config import TrainingConfig
from tests.support.training_world import traffic_log, world_make

CONFIG = TrainingConfig(batch_rows=10_000, budget_s=60.0, inflight_wait_s=0.3)


def _connect():
    db = connection.settings_dict
    return psycopg2.connect(dbname=db["NAME"], host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"])


@pytest.mark.django_db(transaction=True)
def test_an_impression_committed_after_a_newer_one_is_waited_for_and_then_trained():
    world = world_make(seed=51)
    writer = _connect()
    try:
        with writer.cursor() as cur:  # a serving transaction that drew its id first and commits last
            cur.execute(
                "INSERT INTO experiments_impression (request_id, user_id, item_id, experiment_id, arm_id, position,"
                " score, propensity, model_version, served_at) VALUES (gen_random_uuid(), %s, %s, %s, %s, 1, 0, 0.5,"
                " 0, now()) RETURNING id",
                [world.users[0].id, world.items[0].id, world.experiment.id, world.arm.id],
            )
            (slow_id,) = cur.fetchone()
        imps, _ = traffic_log(world, requests=4, k=5, seed=1)
        assert min(imps) > slow_id

        blocked = training.arm_train(arm_id=world.arm.id, config=CONFIG)

        assert [s.status for s in blocked.steps] == ["inflight"]
        assert not ModelCheckpoint.objects.filter(arm=world.arm).exists()
        writer.commit()

        training.arm_train(arm_id=world.arm.id, config=CONFIG)

        (v1,) = ModelCheckpoint.objects.filter(arm=world.arm)
        assert v1.metrics["n_impressions"] == len(imps) + 1
        assert v1.cursor == max(imps)
    finally:
        writer.close()


@pytest.mark.django_db(transaction=True)
def test_a_writer_that_aborts_leaves_a_gap_the_cursor_moves_past():
    world = world_make(seed=52)
    writer = _connect()
    try:
        with writer.cursor() as cur:
            cur.execute(
                "INSERT INTO experiments_impression (request_id, user_id, item_id, experiment_id, arm_id, position,"
                " score, propensity, model_version, served_at) VALUES (gen_random_uuid(), %s, %s, %s, %s, 1, 0, 0.5,"
                " 0, now()) RETURNING id",
                [world.users[0].id, world.items[0].id, world.experiment.id, world.arm.id],
            )
        imps, _ = traffic_log(world, requests=2, k=5, seed=2)
        writer.rollback()

        training.arm_train(arm_id=world.arm.id, config=dataclasses.replace(CONFIG, inflight_wait_s=5.0))

        (v1,) = ModelCheckpoint.objects.filter(arm=world.arm)
        assert (v1.metrics["n_impressions"], v1.cursor) == (len(imps), max(imps))
    finally:
        writer.close()
