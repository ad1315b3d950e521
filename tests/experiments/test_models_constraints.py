"""Each database constraint refuses a row that breaks it (one test per constraint, real Postgres)."""

import uuid

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from experiments.models import (
    Arm,
    ArmUserStat,
    Assignment,
    Click,
    Experiment,
    Impression,
    Item,
    ModelCheckpoint,
    ShopUser,
)
from tests.support.training_world import click_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    user = ShopUser.objects.create(external_id="u1")
    item = Item.objects.create(external_id="i1", title="Item")
    experiment = Experiment.objects.create(slug="exp", salt="s1", status="running")
    arm = Arm.objects.create(experiment=experiment, name="a", kind="popularity")
    return {"user": user, "item": item, "experiment": experiment, "arm": arm}


def impression_kwargs(world, **over):
    kwargs = {
        "request_id": uuid.uuid4(),
        "user": world["user"],
        "item": world["item"],
        "experiment": world["experiment"],
        "arm": world["arm"],
        "position": 1,
        "score": 0.5,
        "propensity": 0.5,
        "model_version": 0,
        "served_at": timezone.now(),
    }
    kwargs.update(over)
    return kwargs


def refuses(create, constraint: str):
    with pytest.raises(IntegrityError) as excinfo, transaction.atomic():
        create()
    assert constraint in str(excinfo.value)


def test_shopuser_external_id_unique(world):
    refuses(lambda: ShopUser.objects.create(external_id="u1"), "external_id")


def test_shopuser_external_id_not_empty(world):
    refuses(lambda: ShopUser.objects.create(external_id=""), "shopuser_external_id_not_empty")


def test_item_external_id_unique(world):
    refuses(lambda: Item.objects.create(external_id="i1"), "external_id")


def test_item_external_id_not_empty(world):
    refuses(lambda: Item.objects.create(external_id=""), "item_external_id_not_empty")


def test_item_price_non_negative(world):
    refuses(lambda: Item.objects.create(external_id="i2", price=-1), "item_price_non_negative")


def test_experiment_slug_unique(world):
    refuses(lambda: Experiment.objects.create(slug="exp", salt="x"), "slug")


def test_experiment_salt_not_empty(world):
    refuses(lambda: Experiment.objects.create(slug="exp2", salt=""), "experiment_salt_not_empty")


def test_experiment_concluded_has_winner(world):
    refuses(
        lambda: Experiment.objects.create(slug="exp3", salt="x", status="concluded"), "experiment_concluded_has_winner"
    )


def test_arm_unique_name_per_experiment(world):
    refuses(
        lambda: Arm.objects.create(experiment=world["experiment"], name="a", kind="popularity"),
        "arm_unique_name_per_experiment",
    )


def test_arm_weight_non_negative(world):
    refuses(
        lambda: Arm.objects.create(experiment=world["experiment"], name="b", kind="popularity", weight=-0.1),
        "arm_weight_non_negative",
    )


def test_arm_name_not_empty(world):
    refuses(lambda: Arm.objects.create(experiment=world["experiment"], name="", kind="popularity"), "arm_name_not_empty")


def test_arm_kind_not_empty(world):
    refuses(lambda: Arm.objects.create(experiment=world["experiment"], name="c", kind=""), "arm_kind_not_empty")


def test_assignment_unique_user_experiment(world):
    Assignment.objects.create(user=world["user"], experiment=world["experiment"], arm=world["arm"], bucket=5)
    refuses(
        lambda: Assignment.objects.create(user=world["user"], experiment=world["experiment"], arm=world["arm"], bucket=6),
        "assignment_unique_user_experiment",
    )


def test_assignment_bucket_range(world):
    refuses(
        lambda: Assignment.objects.create(
            user=world["user"], experiment=world["experiment"], arm=world["arm"], bucket=10_000
        ),
        "assignment_bucket_range",
    )


def test_impression_position_positive(world):
    refuses(lambda: Impression.objects.create(**impression_kwargs(world, position=0)), "impression_position_positive")


def test_impression_propensity_not_zero(world):
    refuses(lambda: Impression.objects.create(**impression_kwargs(world, propensity=0.0)), "impression_propensity_range")


def test_impression_propensity_at_most_one(world):
    refuses(lambda: Impression.objects.create(**impression_kwargs(world, propensity=1.01)), "impression_propensity_range")


def test_impression_model_version_non_negative(world):
    refuses(
        lambda: Impression.objects.create(**impression_kwargs(world, model_version=-1)),
        "impression_model_version_non_negative",
    )


def test_impression_unique_request_position(world):
    """A replayed row (same request, position and served_at) is refused; served_at is in the key because the
    table is partitioned on it (migration 0011)."""
    request_id, served_at = uuid.uuid4(), timezone.now()
    Impression.objects.create(**impression_kwargs(world, request_id=request_id, served_at=served_at))
    refuses(
        lambda: Impression.objects.create(**impression_kwargs(world, request_id=request_id, served_at=served_at)),
        '(request_id, "position", served_at)',  # Postgres names the partition's copy of the constraint
    )


def test_click_one_per_impression(world):
    impression = Impression.objects.create(**impression_kwargs(world))
    click_create(impression, clicked_at=timezone.now())
    refuses(lambda: click_create(impression, clicked_at=timezone.now()), "impression_id")


def test_click_without_its_impressions_arm_is_refused(world):
    """The trainer finds an arm's clicks by the copied ``arm_id`` (migration 0022): a writer that forgets it fails."""
    impression = Impression.objects.create(**impression_kwargs(world))
    click = click_create(impression, clicked_at=timezone.now())
    assert (click.arm_id, click.user_id, click.item_id, click.position, click.served_at) == (
        impression.arm_id, impression.user_id, impression.item_id, impression.position, impression.served_at)
    click.delete()
    refuses(lambda: Click.objects.create(impression=impression, clicked_at=timezone.now(), served_at=timezone.now(),
                                         user_id=impression.user_id, item_id=impression.item_id, position=1,
                                         arm_id=None), "arm_id")


def test_checkpoint_unique_arm_version(world):
    ModelCheckpoint.objects.create(arm=world["arm"], version=1, state=b"x")
    refuses(lambda: ModelCheckpoint.objects.create(arm=world["arm"], version=1, state=b"y"), "checkpoint_unique_arm_version")


def test_checkpoint_version_positive(world):
    refuses(lambda: ModelCheckpoint.objects.create(arm=world["arm"], version=0, state=b"x"), "checkpoint_version_positive")


def test_checkpoint_cursor_non_negative(world):
    refuses(
        lambda: ModelCheckpoint.objects.create(arm=world["arm"], version=1, state=b"x", cursor=-1),
        "checkpoint_cursor_non_negative",
    )


def test_checkpoint_click_cursor_non_negative(world):
    refuses(
        lambda: ModelCheckpoint.objects.create(arm=world["arm"], version=1, state=b"x", click_cursor=-1),
        "checkpoint_click_cursor_non_negative",
    )


def test_armuserstat_unique(world):
    ArmUserStat.objects.create(arm=world["arm"], user=world["user"], epoch=0, impressions=1)
    refuses(
        lambda: ArmUserStat.objects.create(arm=world["arm"], user=world["user"], epoch=0, impressions=1),
        "armuserstat_unique",
    )


def test_armuserstat_impressions_non_negative(world):
    refuses(
        lambda: ArmUserStat.objects.create(arm=world["arm"], user=world["user"], impressions=-1, clicks=0),
        "armuserstat_clicks_within_impressions",
    )


def test_armuserstat_clicks_within_impressions(world):
    refuses(
        lambda: ArmUserStat.objects.create(arm=world["arm"], user=world["user"], impressions=1, clicks=2),
        "armuserstat_clicks_within_impressions",
    )
