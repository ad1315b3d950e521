"""Each constraint of the business-event tables refuses a row that breaks it (real Postgres)."""

from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from experiments.models import (
    Arm,
    ArmUserOutcome,
    BusinessEvent,
    EventAttribution,
    Experiment,
    ShopUser,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    user = ShopUser.objects.create(external_id="u1")
    experiment = Experiment.objects.create(slug="exp", salt="s1", status="running")
    return {"user": user, "experiment": experiment,
            "arm": Arm.objects.create(experiment=experiment, name="a", kind="popularity")}


def event(world, **fields) -> BusinessEvent:
    now = timezone.now()
    return BusinessEvent.objects.create(**{"user": world["user"], "type": "purchase", "ts": now, "received_at": now,
                                           **fields})


def refused(make) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        make()


@pytest.mark.parametrize("fields", [{"type": "refund"}, {"value": Decimal("-0.01")}, {"event_id": ""}])
def test_a_bad_event_row_is_refused(world, fields):
    refused(lambda: event(world, **fields))


def test_an_event_id_is_stored_once(world):
    event(world, event_id="o-1")
    refused(lambda: event(world, event_id="o-1"))
    event(world)
    event(world)  # without event_id: any number


def test_an_event_is_attributed_once_per_experiment(world):
    stored = event(world)
    row = {"event": stored, "experiment": world["experiment"], "arm": world["arm"], "epoch": 0, "impression_id": 1,
           "late": False}
    EventAttribution.objects.create(**row)
    refused(lambda: EventAttribution.objects.create(**row))
    refused(lambda: EventAttribution.objects.create(**{**row, "epoch": -1}))


@pytest.mark.parametrize("fields", [{"carts": -1}, {"purchases": -1}, {"views": -1},
                                    {"purchases": 1, "revenue": Decimal("-1")}, {"revenue": Decimal("5")}])
def test_a_bad_outcome_row_is_refused(world, fields):
    refused(lambda: ArmUserOutcome.objects.create(arm=world["arm"], user=world["user"], epoch=0, **fields))


def test_the_outcome_rollup_is_one_row_per_arm_user_and_epoch(world):
    ArmUserOutcome.objects.create(arm=world["arm"], user=world["user"], epoch=0)
    refused(lambda: ArmUserOutcome.objects.create(arm=world["arm"], user=world["user"], epoch=0))
