"""The impression log is partitioned by day: rows land in their day, retention drops whole days with their clicks."""

from datetime import UTC, datetime, time, timedelta

import pytest
from django.db import connection

from experiments.models import ArmUserStat, Click, Impression, ShadowRanking
from experiments.services.clicks import click_record
from experiments.services.events import recommendation_serve
from experiments.services.partitions import (
    impression_partition_days,
    impression_partition_ensure,
    impression_partitions_maintain,
)
from tests.support.serving import catalogue_make, experiment_make
from tests.support.training_world import click_create

pytestmark = pytest.mark.django_db


def _partition_of(impression_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM experiments_impression WHERE id = %s", [impression_id])
        return cursor.fetchone()[0]


def _impression(arm, user, item, served_at: datetime) -> Impression:
    return Impression.objects.create(request_id=f"00000000-0000-0000-0000-{served_at.toordinal():012d}", user=user,
                                     item=item, experiment=arm.experiment, arm=arm, position=1, score=0.5,
                                     propensity=0.5, served_at=served_at)


@pytest.fixture
def served(settings):
    settings.RECSITE = {**settings.RECSITE, "SERVING_REFRESH": "inline"}
    catalogue_make(n=5)
    experiment_make(arms=(("a", "popularity", 1.0),))
    return recommendation_serve(user_id="ann", k=2)


def test_a_served_impression_lands_in_todays_partition_and_its_click_is_recorded(served):
    first = Impression.objects.get(request_id=served.request_id, position=1)
    clicked = click_record(impression_id=served.items[0].impression_id)

    assert _partition_of(first.id) == f"experiments_impression_{datetime.now(UTC):%Y%m%d}"
    assert (clicked.created, Click.objects.get().impression_id) == (True, first.id)


def test_a_row_outside_every_day_partition_goes_to_the_default_one(served):
    first = Impression.objects.filter(request_id=served.request_id).first()
    old = _impression(first.arm, first.user, first.item, datetime(2001, 1, 1, 12, tzinfo=UTC))

    assert _partition_of(old.id) == "experiments_impression_default"


def test_maintenance_creates_the_week_ahead_and_drops_days_past_the_retention_with_their_clicks(served):
    today = datetime.now(UTC).date()
    old_day = today - timedelta(days=100)
    assert impression_partition_ensure(day=old_day)
    recent = Impression.objects.filter(request_id=served.request_id).first()
    old = _impression(recent.arm, recent.user, recent.item, datetime.combine(old_day, time(9), tzinfo=UTC))
    click_create(old, clicked_at=old.served_at)
    click_create(recent, clicked_at=recent.served_at)
    for imp in (old, recent):  # a shadow arm's rows of each (experiments/shadow_models.py)
        row = ShadowRanking.objects.create(
            arm=recent.arm, experiment=recent.experiment, served_arm=recent.arm, request_id=imp.request_id,
            user=imp.user, impression_ids=[imp.id], items=[imp.item_id], logged_propensities=[0.5],
            target_propensities=[0.2], shadow_items=[imp.item_id], shadow_scores=[0.1])
        ShadowRanking.objects.filter(pk=row.pk).update(created_at=imp.served_at)
    rollup = list(ArmUserStat.objects.values_list("impressions", flat=True))

    result = impression_partitions_maintain(keep_days=90, days_ahead=7, today=today)

    assert result["dropped"] == [old_day.isoformat()]
    assert old_day not in impression_partition_days()
    assert {today + timedelta(days=d) for d in range(8)} <= set(impression_partition_days())
    assert not Impression.objects.filter(id=old.id).exists()
    assert list(Click.objects.values_list("impression_id", flat=True)) == [recent.id]
    assert [r.impression_ids for r in ShadowRanking.objects.all()] == [[recent.id]]
    assert list(ArmUserStat.objects.values_list("impressions", flat=True)) == rollup


def test_a_day_whose_rows_sit_in_the_default_partition_is_refused_not_broken(served):
    recent = Impression.objects.filter(request_id=served.request_id).first()
    far = datetime.now(UTC).date() + timedelta(days=400)
    _impression(recent.arm, recent.user, recent.item, datetime.combine(far, time(1), tzinfo=UTC))

    assert impression_partition_ensure(day=far) is False
    assert Impression.objects.count() == 3
