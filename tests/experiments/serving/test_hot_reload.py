"""Hot reload by notification: the serving cache wakes on the Redis announcement, polls slowly as a fallback."""

import os
import time

import pytest

from experiments.models import ModelCheckpoint
from experiments.serving.arms import arm_build
from experiments.serving.cache import ServingCache
from experiments.serving.versions import model_version_notify, wait_connected
from tests.support.live import free_port, wait_until
from tests.support.serving import catalogue_make, experiment_make

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def arm():
    catalogue_make(n=20)
    experiment = experiment_make(arms=(("a", "popularity", 1.0),))
    return experiment.arms.get()


def _checkpoint(arm, version: int) -> None:
    state = arm_build(kind=arm.kind, params=arm.params, arm_id=arm.id).to_bytes()
    ModelCheckpoint.objects.create(arm=arm, version=version, state=state)


def test_an_announced_version_is_served_at_once_though_the_fallback_poll_is_a_minute(arm):
    cache = ServingCache(poll_interval_s=0.25, subscribed_poll_s=60.0)
    try:
        cache.current()
        cache.model_wait(arm.id)
        assert wait_connected(cache.subscriber, timeout=10)
        assert cache.poll_interval_s == 60.0
        time.sleep(0.3)  # let the refresh that followed the subscription settle into its one-minute wait
        _checkpoint(arm, 1)
        time.sleep(1.0)
        assert cache.current().models[arm.id].version == 0  # not announced: the slow poll has not run

        started = time.monotonic()
        assert model_version_notify(arm_id=arm.id, version=1)
        wait_until(lambda: cache.current().models[arm.id].version == 1, timeout=5, what="the announced version")
        assert time.monotonic() - started < 1.0
        # An announcement of a version it already serves, or of an arm it does not serve, wakes nothing.
        wakeups = cache.wakeups
        model_version_notify(arm_id=arm.id, version=1)
        model_version_notify(arm_id=10**9, version=3)
        time.sleep(0.5)
        assert cache.wakeups == wakeups and cache.subscriber.received >= 3
    finally:
        cache.stop()


def test_without_redis_the_cache_polls_at_the_fast_interval(arm, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    cache = ServingCache(poll_interval_s=0.25, subscribed_poll_s=60.0)
    try:
        cache.current()
        cache.model_wait(arm.id)
        time.sleep(0.5)
        assert not cache.subscriber.connected and cache.poll_interval_s == 0.25
        started = time.monotonic()
        _checkpoint(arm, 1)
        wait_until(lambda: cache.current().models[arm.id].version == 1, timeout=5, what="the polled version")
        assert time.monotonic() - started < 1.5
    finally:
        cache.stop()


def test_a_forked_child_starts_its_own_subscriber(arm):
    cache = ServingCache(poll_interval_s=0.25, subscribed_poll_s=60.0)
    try:
        cache.current()
        assert wait_connected(cache.subscriber, timeout=10)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: the parent's threads are gone; first use starts this process's own
            ok = False
            try:
                ok = not cache.subscriber.connected
                cache.start()
                ok = ok and wait_connected(cache.subscriber, timeout=10)
            finally:
                os.write(write, b"1" if ok else b"0")
                os._exit(0)
        os.close(write)
        result = os.read(read, 1)
        os.waitpid(pid, 0)
        assert result == b"1"
        assert cache.subscriber.connected  # the parent's is untouched
    finally:
        cache.stop()


def test_a_promotion_and_a_new_item_reach_serving_at_once_though_the_fallback_poll_is_a_minute(django_user_model):
    from django.contrib.auth.models import Permission

    from experiments.services import decisions
    from experiments.services.catalogue import ItemRow, item_bulk_upsert

    catalogue_make(n=10)
    experiment = experiment_make(arms=(("a", "popularity", 1.0), ("b", "popularity", 1.0)))
    a, b = experiment.arms.order_by("name")
    admin = django_user_model.objects.create_user("boss", password="x", is_staff=True)
    admin.user_permissions.add(Permission.objects.get(codename="promote_arm"))
    admin = django_user_model.objects.get(pk=admin.pk)
    cache = ServingCache(poll_interval_s=0.25, subscribed_poll_s=60.0)
    try:
        cache.current()
        cache.model_wait(b.id)
        assert wait_connected(cache.subscriber, timeout=10)
        time.sleep(0.5)

        started = time.monotonic()
        decisions.arm_promote(experiment=experiment, arm=b, user=admin, reason="b wins")
        wait_until(lambda: cache.current().experiments[experiment.slug].winner_id == b.id, timeout=5,
                   what="the promotion")
        promoted_s = time.monotonic() - started

        started = time.monotonic()
        item_bulk_upsert(rows=[ItemRow(external_id="fresh-item", category="x")])
        wait_until(lambda: "fresh-item" in cache.current().catalogue.external_ids, timeout=5, what="the new item")
        item_s = time.monotonic() - started
    finally:
        cache.stop()
    assert promoted_s < 1.0 and item_s < 1.0, (promoted_s, item_s)
