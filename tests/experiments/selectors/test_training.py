"""Freshness per arm: event → serving lag from a click to the first impression served by a version trained on it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from experiments.models import Impression, ModelCheckpoint
from experiments.selectors.training import arm_freshness, click_serving_lags
from tests.support.training_world import click_create, world_make

pytestmark = pytest.mark.django_db


def _serve(world, *, at, version, n=3):
    return Impression.objects.bulk_create(
        [
            Impression(
                user=world.users[0], item=world.items[i], experiment=world.experiment, arm=world.arm,
                position=i + 1, score=0.0, propensity=0.5, model_version=version, served_at=at,
            )
            for i in range(n)
        ]
    )


def test_the_lag_runs_from_the_click_to_the_first_impression_served_with_a_version_trained_on_it():
    world = world_make(seed=41)
    t0 = timezone.now() - timedelta(seconds=30)
    first = _serve(world, at=t0, version=0)
    c1 = click_create(first[0], clicked_at=t0 + timedelta(seconds=1))
    click_create(first[1], clicked_at=t0 + timedelta(seconds=1.5))
    late = click_create(first[2], clicked_at=t0 + timedelta(seconds=2), late=True)
    v1 = ModelCheckpoint.objects.create(
        arm=world.arm, version=1, state=b"", cursor=first[-1].id, click_cursor=late.id, examples_seen=5,
        metrics={"accepted": True, "click_from": c1.id - 1, "click_to": late.id, "n_clicks": 2,
                 "logloss_progressive": 0.3, "auc_progressive": 0.7},
    )
    _serve(world, at=t0 + timedelta(seconds=3), version=0)  # served before the reload
    _serve(world, at=t0 + timedelta(seconds=4), version=1)
    _serve(world, at=t0 + timedelta(seconds=5), version=1)

    lags = click_serving_lags(arm_id=world.arm.id, since=t0)
    fresh = arm_freshness(arm_ids=[world.arm.id], now=v1.created_at + timedelta(seconds=10))[world.arm.id]

    assert sorted(lags.round(3).tolist()) == [2.5, 3.0]
    assert fresh["event_to_serving_lag_s"] == 2.75
    assert fresh["event_to_serving_lag_n"] == 2
    assert fresh["model_version"] == 1
    assert fresh["serving_version"] == 1
    assert fresh["seconds_since_update"] == 10.0
    assert (fresh["logloss_progressive"], fresh["auc_progressive"]) == (0.3, 0.7)
    assert fresh["health"] == "healthy"


def test_rejected_versions_and_versions_not_yet_served_give_no_lag():
    world = world_make(seed=42)
    t0 = timezone.now() - timedelta(seconds=30)
    first = _serve(world, at=t0, version=0)
    click = click_create(first[0], clicked_at=t0 + timedelta(seconds=1))
    common = {"click_from": click.id - 1, "click_to": click.id, "n_clicks": 1}
    ModelCheckpoint.objects.create(arm=world.arm, version=1, state=b"", cursor=first[-1].id,
                                   metrics={"accepted": False, "reject_reason": "NaN", **common})
    _serve(world, at=t0 + timedelta(seconds=3), version=1)
    ModelCheckpoint.objects.create(arm=world.arm, version=2, state=b"", cursor=first[-1].id,
                                   metrics={"accepted": True, **common})

    fresh = arm_freshness(arm_id=world.arm.id)

    assert click_serving_lags(arm_id=world.arm.id, since=t0).size == 0
    assert fresh["event_to_serving_lag_s"] is None
    assert fresh["rejected_recent"] == 1
    assert fresh["last_rejection"] == "NaN"
