"""The serving cache's background thread against committed rows: hot reload, corrupt checkpoints, catalogue."""

import time

import pytest

from experiments.models import Item, ModelCheckpoint
from experiments.serving.arms import arm_build
from experiments.serving.cache import ServingCache
from tests.support.live import wait_until
from tests.support.serving import catalogue_make, experiment_make

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def arm():
    catalogue_make(n=20)
    experiment = experiment_make(arms=(("a", "popularity", 1.0),))
    return experiment.arms.get()


@pytest.fixture
def cache(arm):
    # These tests write checkpoints without announcing them: the fallback poll must find them.
    cache = ServingCache(poll_interval_s=0.25, subscribed_poll_s=0.25)
    cache.current()  # starts the thread and waits for the first snapshot
    cache.model_wait(arm.id)
    yield cache
    cache.stop()


def checkpoint(arm, version: int, state: bytes | None = None) -> float:
    state = state if state is not None else arm_build(kind=arm.kind, params=arm.params, arm_id=arm.id).to_bytes()
    ModelCheckpoint.objects.create(arm=arm, version=version, state=state)
    return time.monotonic()


def served_version(cache, arm) -> int:
    return cache.current().models[arm.id].version


def test_version_zero_is_a_fresh_arm_before_any_checkpoint(cache, arm):
    assert served_version(cache, arm) == 0


def test_a_new_checkpoint_is_served_within_a_second(cache, arm):
    committed = checkpoint(arm, 1)
    wait_until(lambda: served_version(cache, arm) == 1, timeout=5, what="version 1")
    assert time.monotonic() - committed < 1.0


def test_a_corrupt_checkpoint_is_skipped_and_the_previous_version_kept(cache, arm):
    checkpoint(arm, 1)
    wait_until(lambda: served_version(cache, arm) == 1, timeout=5, what="version 1")
    checkpoint(arm, 2, state=b"not a checkpoint")
    wait_until(lambda: (arm.id, 2) in cache._bad, timeout=5, what="version 2 refused")
    assert served_version(cache, arm) == 1


def test_a_good_checkpoint_after_a_corrupt_one_is_served(cache, arm):
    checkpoint(arm, 1, state=b"garbage")
    committed = checkpoint(arm, 2)
    wait_until(lambda: served_version(cache, arm) == 2, timeout=5, what="version 2")
    assert time.monotonic() - committed < 1.0


def test_reads_do_not_wait_for_a_reload_in_progress(cache, arm):
    with cache._refresh_lock:  # what a slow checkpoint load holds
        started = time.monotonic()
        during = cache.current()
        elapsed = time.monotonic() - started
    assert (during.models[arm.id].version, elapsed < 0.05) == (0, True)


def test_catalogue_changes_are_picked_up(cache, arm):
    Item.objects.create(external_id="new-item")
    wait_until(lambda: "new-item" in cache.current().catalogue.external_ids, timeout=5, what="new item")


def test_a_deactivated_item_leaves_the_catalogue(cache, arm):
    Item.objects.filter(external_id="item-00003").update(active=False)
    wait_until(lambda: "item-00003" not in cache.current().catalogue.external_ids, timeout=5, what="item gone")

