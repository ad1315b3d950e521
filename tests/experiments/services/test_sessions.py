"""Session history through the real serve, click and training paths on Postgres: what q_learning ranks with is what
it learns on, read without an extra round trip, bounded, and reset after idleness."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from experiments import features
from experiments.models import Arm, Impression, Item, ModelCheckpoint, ShopUser
from experiments.services import sessions, shoppers
from experiments.services.clicks import click_record
from experiments.services.events import recommendation_serve
from experiments.services.training_data import Horizon, step_batch, step_rows_read
from models.types import PAD
from tests.support.serving import catalogue_make, experiment_make

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("serving_manual")]

SMALL = {"hidden": 8, "emb_dim": 4, "user_buckets": 64, "item_buckets": 64, "warmup_examples": 0}


@pytest.fixture
def arena(serving_manual):
    catalogue_make(n=30)
    experiment = experiment_make(slug="sess", arms=(("q", "q_learning", 1.0),))
    Arm.objects.filter(experiment=experiment).update(params=SMALL)
    serving_manual.refresh()
    return experiment


def _pks(external_ids):
    by_ext = dict(Item.objects.values_list("external_id", "id"))
    return [by_ext[e] for e in external_ids]


def test_the_next_slate_is_ranked_with_the_last_one_and_its_click(arena):
    first = recommendation_serve(user_id="shopper", k=3)
    assert Impression.objects.filter(hist_impressed=[]).count() == 3  # an empty session, stored as such
    click_record(impression_id=first.items[1].impression_id)

    second = recommendation_serve(user_id="shopper", k=3)

    shown = _pks([i.item_id for i in first.items])
    clicked = _pks([first.items[1].item_id])
    user = ShopUser.objects.get(external_id="shopper")
    assert user.session_clicked == clicked
    assert user.session_impressed == (_pks([i.item_id for i in second.items]) + shown)[: sessions.HISTORY_LEN]
    later = Impression.objects.filter(request_id=second.request_id)
    assert {tuple(i.hist_impressed) for i in later} == {tuple(shown)}
    assert {tuple(i.hist_clicked) for i in later} == {tuple(clicked)}


def test_training_reads_the_state_serving_ranked_with(arena):
    first = recommendation_serve(user_id="shopper", k=3)
    click_record(impression_id=first.items[0].impression_id)
    recommendation_serve(user_id="shopper", k=3)

    # The trainer's own read of the arm's impressions (no clicks: click horizon 0).
    arm_id = Impression.objects.filter(user__external_id="shopper").values_list("arm_id", flat=True).first()
    rows = step_rows_read(arm_id=arm_id, cursor=0, click_cursor=0, horizon=Horizon(10**15, 0, 0.0), limit=1000)
    assert len(rows.impressions) == 6 and len(rows.clicks) == 0
    batch = step_batch(rows=rows, params=SMALL)

    keys = features.external_keys([i.item_id for i in first.items])
    np.testing.assert_array_equal(batch.impressed[:3], PAD)  # the first slate saw an empty session
    np.testing.assert_array_equal(batch.impressed[3:, :3], np.tile(keys, (3, 1)))
    np.testing.assert_array_equal(batch.clicked[3:, 0], keys[0])
    np.testing.assert_array_equal(batch.clicked[3:, 1:], PAD)

    # With the click in the horizon, the positive carries the session its impression was ranked with: the click
    # row holds the impression's columns (models.Click), read without joining the impressions.
    rows = step_rows_read(arm_id=arm_id, cursor=0, click_cursor=0, horizon=Horizon(10**15, 10**15, 0.0), limit=1000)
    (click,) = rows.clicks.records()
    imp = Impression.objects.get(id=click["impression_id"])
    assert (click["user_id"], click["item_id"], click["position"], click["hist_impressed"]) == (
        imp.user_id, imp.item_id, 1, imp.hist_impressed)
    batch = step_batch(rows=rows, params=SMALL)
    np.testing.assert_array_equal(batch.impressed[-1], batch.impressed[0])  # both saw the first, empty session
    assert batch.labels.tolist() == [0.0] * 6 + [1.0]


def test_the_session_is_bounded_and_read_in_the_users_round_trip(arena):
    for _ in range(6):
        recommendation_serve(user_id="shopper", k=3)
    assert len(ShopUser.objects.get(external_id="shopper").session_impressed) == sessions.HISTORY_LEN

    with CaptureQueriesContext(connection) as queries:
        recommendation_serve(user_id="shopper", k=3)
    # The user lookup (user + assignment + session) and the impressions statement (which extends the session).
    assert len(queries) == 2, [q["sql"][:80] for q in queries]


def test_an_idle_session_starts_over(arena):
    recommendation_serve(user_id="shopper", k=3)
    ShopUser.objects.filter(external_id="shopper").update(
        session_at=timezone.now() - timedelta(seconds=sessions.idle_s() + 5))
    second = recommendation_serve(user_id="shopper", k=3)
    assert {tuple(i.hist_impressed) for i in Impression.objects.filter(request_id=second.request_id)} == {()}
    assert ShopUser.objects.get(external_id="shopper").session_impressed == _pks([i.item_id for i in second.items])


def test_arms_that_ignore_the_session_write_none(serving_manual):
    catalogue_make(n=10)
    experiment_make(slug="pop", arms=(("p", "popularity", 1.0),))
    serving_manual.refresh()
    served = recommendation_serve(user_id="shopper", k=3)
    click_record(impression_id=served.items[0].impression_id)
    user = ShopUser.objects.get(external_id="shopper")
    assert (user.session_clicked, user.session_impressed, user.session_at) == ([], [], None)
    assert not Impression.objects.filter(hist_impressed__isnull=False).exists()


def test_a_cached_user_sees_this_process_own_writes(arena, settings):
    settings.RECSITE = {**settings.RECSITE, "USER_CACHE_TTL_S": 60.0}
    recommendation_serve(user_id="shopper", k=3)  # creates the user; the next lookup caches them
    first = recommendation_serve(user_id="shopper", k=3)
    click_record(impression_id=first.items[2].impression_id)
    cached = shoppers._user_cache.get("shopper")[2]
    stored = ShopUser.objects.values_list("session_clicked", "session_impressed").get()
    assert cached == sessions.Session(*map(tuple, stored))
    assert cached.clicked == tuple(_pks([first.items[2].item_id]))
    with CaptureQueriesContext(connection) as queries:
        second = recommendation_serve(user_id="shopper", k=3)
    assert len(queries) == 1  # served from the cache, with the click in the session it ranked on
    assert {tuple(i.hist_clicked) for i in Impression.objects.filter(request_id=second.request_id)} == {cached.clicked}


def test_history_keys_drop_items_that_left_the_catalogue():
    pks, keys = np.array([30, 10, 20]), np.array([300, 100, 200])
    out = sessions.history_keys([20, 99, 10], pks, keys)
    assert out.tolist() == [200, 100] + [PAD] * (sessions.HISTORY_LEN - 2)


def test_train_arm_teaches_q_learning_on_the_sessions_it_served(arena):
    from experiments.services import training
    from experiments.services.training_config import TrainingConfig
    from experiments.serving.arms import arm_build

    arm = Arm.objects.get(experiment=arena)
    rng = np.random.default_rng(3)
    for r in range(24):
        served = recommendation_serve(user_id=f"shopper-{r % 4}", k=3)
        click_record(impression_id=served.items[int(rng.integers(3))].impression_id)
    training._models.clear()

    run = training.arm_train(arm_id=arm.id, config=TrainingConfig(batch_rows=10_000, budget_s=60.0))

    assert run.status == "ok" and run.versions == [1]
    trained = training._models[arm.id][1]
    fresh = arm_build(kind=arm.kind, params=arm.params, arm_id=arm.id)
    assert ModelCheckpoint.objects.get(arm=arm, version=1).examples_seen == 24 * 3 + 24
    # The user tower's rows that read the mean clicked / impressed item embeddings moved: the batches carried
    # sessions (with empty ones, their gradient is exactly zero and the rows keep their initial values).
    def history_rows(model):
        off, shape = model.tower.graphs.layout["w1u"]
        w1u = model.tower.state["w"]["dense"].numpy()[off : off + shape[0] * shape[1]].reshape(shape)
        return w1u[SMALL["emb_dim"] + int(model.params["user_dim"]) :]

    assert history_rows(trained).shape[0] == 2 * SMALL["emb_dim"]
    assert np.abs(history_rows(trained) - history_rows(fresh)).max() > 1e-4
