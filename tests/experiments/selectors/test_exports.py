"""The per-user export's rows: one per arm × user × period, the tick's counts beside the live ones, and the
pre-exposure covariate from the impression log of other experiments."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from experiments.models import ArmUserStat, Assignment, Experiment, Impression, Item, ShopUser
from experiments.selectors.exports import USER_EXPORT_FIELDS, experiment_user_row_chunks, experiment_user_rows
from experiments.services import stats_tick as tick_services
from tests.experiments.stats_support import make_experiment
from tests.support.training_world import click_create

pytestmark = pytest.mark.django_db

T0 = timezone.now().replace(microsecond=0) - timedelta(days=1)


def shown(*, user, arm, at, clicked_at=None, late=False) -> Impression:
    item = Item.objects.get_or_create(external_id="item")[0]
    impression = Impression.objects.create(user=user, item=item, experiment=arm.experiment, arm=arm, position=1,
                                           score=0.5, propensity=1.0, served_at=at)
    if clicked_at is not None:
        click_create(impression, clicked_at=clicked_at, late=late)
    return impression


def stat(*, user, arm, epoch=0, n, c) -> None:
    ArmUserStat.objects.create(user=user, arm=arm, epoch=epoch, impressions=n, clicks=c)


@pytest.fixture
def world():
    """ann returns with history elsewhere; bob is new (two periods); cat's first impressions here were dropped but
    her assignment remembers; dan has a rollup row with no impressions."""
    experiment, (control, treat) = make_experiment(slug="nb")
    _, (elsewhere,) = make_experiment(slug="other", arms=("x",))
    ann, bob, cat, dan = ShopUser.objects.bulk_create([ShopUser(external_id=u) for u in ("ann", "bob", "cat", "dan")])
    hour = timedelta(hours=1)
    shown(user=ann, arm=elsewhere, at=T0 - 3 * hour, clicked_at=T0 - 3 * hour + timedelta(seconds=5))  # counts
    shown(user=ann, arm=elsewhere, at=T0 - 2 * hour, clicked_at=T0 - hour, late=True)  # late: not counted
    shown(user=ann, arm=elsewhere, at=T0 - timedelta(minutes=1), clicked_at=T0 + timedelta(minutes=1))  # after
    shown(user=ann, arm=control, at=T0, clicked_at=T0 + timedelta(seconds=3))
    shown(user=ann, arm=control, at=T0 + timedelta(seconds=1))
    shown(user=ann, arm=elsewhere, at=T0 + hour, clicked_at=T0 + hour)  # after the exposure: not history
    shown(user=bob, arm=treat, at=T0)
    shown(user=cat, arm=elsewhere, at=T0 - 2 * hour, clicked_at=T0 - 2 * hour)
    shown(user=cat, arm=elsewhere, at=T0 - timedelta(minutes=10), clicked_at=T0 - timedelta(minutes=9))
    shown(user=cat, arm=treat, at=T0)
    Assignment.objects.create(user=cat, experiment=experiment, arm=treat, bucket=1)
    Assignment.objects.filter(user=cat).update(assigned_at=T0 - timedelta(minutes=20))
    stat(user=ann, arm=control, n=2, c=1)
    stat(user=bob, arm=treat, n=1, c=0)
    stat(user=bob, arm=treat, epoch=1, n=4, c=2)
    stat(user=cat, arm=treat, n=3, c=1)
    stat(user=dan, arm=control, n=5, c=5)
    stat(user=ShopUser.objects.create(external_id="eve"), arm=control, n=0, c=0)  # no impressions: no cluster
    return experiment, control, treat


def test_one_row_per_arm_user_and_period_with_the_covariate(world):
    experiment, _, _ = world

    rows = [(r["arm"], r["user_id"], r["epoch"], r["impressions"], r["clicks"], r["pre_impressions"], r["pre_clicks"])
            for r in experiment_user_rows(experiment=experiment)]

    assert rows == [
        ("control", "ann", 0, 2, 1, 3, 1),
        ("control", "dan", 0, 5, 5, 0, 0),
        ("treat", "bob", 0, 1, 0, 0, 0),
        ("treat", "bob", 1, 4, 2, 0, 0),
        ("treat", "cat", 0, 3, 1, 1, 1),
    ]


def test_first_exposure_is_the_first_impression_here_or_the_assignment_if_earlier(world):
    experiment, _, _ = world

    first = {r["user_id"]: r["first_exposure_at"] for r in experiment_user_rows(experiment=experiment)}

    assert first == {"ann": T0, "bob": T0, "cat": T0 - timedelta(minutes=20), "dan": None}


def test_the_tick_columns_hold_what_the_last_stats_tick_folded(world):
    experiment, control, _ = world
    tick_services.stats_tick(experiment_id=experiment.id)
    ArmUserStat.objects.filter(arm=control, user__external_id="ann").update(impressions=7, clicks=2)

    rows = {(r["arm"], r["user_id"], r["epoch"]): r for r in experiment_user_rows(experiment=experiment)}
    ann = rows[("control", "ann", 0)]

    assert (ann["impressions"], ann["clicks"], ann["tick_impressions"], ann["tick_clicks"]) == (7, 2, 2, 1)
    assert all(r["tick_impressions"] == r["impressions"] for key, r in rows.items() if key[1] != "ann")


def test_rows_come_in_chunks_from_one_statement(world):
    experiment, _, _ = world

    with CaptureQueriesContext(connection) as queries:
        chunks = list(experiment_user_row_chunks(experiment=experiment, chunk_rows=2))

    assert [len(chunk) for chunk in chunks] == [2, 2, 1]
    assert all(len(row) == len(USER_EXPORT_FIELDS) for chunk in chunks for row in chunk)
    assert sum("experiments_armuserstat" in q["sql"] for q in queries.captured_queries) == 1


def test_an_experiment_without_arms_has_no_rows(db):
    experiment = Experiment.objects.create(slug="empty", salt="salt-empty")

    assert experiment_user_rows(experiment=experiment) == []
