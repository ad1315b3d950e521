"""Finding 5: the serving path's per-process caches are bounded by bytes and by age.

The user cache (``services.events``) held up to 200k entries of up to ~290 KB of decoded attributes each and
never dropped an expired one; the feature-slot memo (``features``) kept any token up to ~16K characters.
Both are now :class:`~experiments.bounded_cache.BoundedCache`: a byte budget that is never exceeded, an age
limit, and expired entries dropped as new ones arrive. bench/bench_memory.py measures the process (RSS) with
1M distinct users; docs/benchmarks.md "Memory" has the bound.
"""

import gc
import json
import tracemalloc

import pytest

from experiments import features
from experiments.bounded_cache import BoundedCache, json_tree_bytes
from experiments.models import ShopUser
from experiments.services import shoppers


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def big_attributes(seed: int) -> dict:
    """About 16 KB of JSON (the largest the API stores) that decodes to several times that in Python objects."""
    return {"seed": seed, "history": list(range(seed, seed + 3000)), "tags": [f"t{i}" for i in range(400)]}


def test_the_cache_never_holds_more_than_its_budget():
    cache = BoundedCache(max_bytes=200_000, ttl_s=60)

    for i in range(5_000):
        cache.put(f"user-{i}", {"n": i}, size=(i % 97) * 40)
        assert cache.bytes <= 200_000

    assert 0 < len(cache) < 5_000
    assert cache.get("user-4999") == {"n": 4999}  # the newest stay, the oldest went first
    assert cache.get("user-0") is None


def test_expired_entries_are_not_served_and_are_dropped_as_new_ones_arrive():
    clock = Clock()
    cache = BoundedCache(max_bytes=10**9, ttl_s=5, clock=clock)
    for i in range(100):
        cache.put(i, "old", size=10)

    clock.now += 6
    served = cache.get(0)
    for i in range(100, 102):
        cache.put(i, "new", size=10)

    assert served is None
    assert len(cache) == 2  # the 100 expired entries are gone, not merely ignored
    assert cache.bytes == sum(10 + 28 + 240 for _ in range(2))


def test_an_entry_larger_than_the_budget_is_not_cached():
    cache = BoundedCache(max_bytes=1_000, ttl_s=60)

    assert cache.put("huge", "x", size=5_000) is False
    assert (len(cache), cache.bytes) == (0, 0)


def test_json_tree_bytes_is_not_an_underestimate():
    text = json.dumps(big_attributes(7))
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    decoded = json.loads(text)
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()

    assert json_tree_bytes(decoded) >= held * 0.95
    assert held > 5 * len(text)  # why counting the text alone would be wrong


@pytest.mark.django_db
def test_the_user_cache_stays_within_its_byte_budget(settings):
    settings.RECSITE = {**settings.RECSITE, "USER_CACHE_MAX_BYTES": 2_000_000, "USER_CACHE_TTL_S": 60.0,
                        "SERVING_REFRESH": "background"}
    ShopUser.objects.bulk_create([ShopUser(external_id=f"big-{i}", attributes=big_attributes(i)) for i in range(60)])
    shoppers._user_cache.clear()

    rows = [shoppers._user_lookup(f"big-{i}", experiment_id=0, epoch=0) for i in range(60)]

    assert all(row is not None for row in rows)
    assert shoppers._user_cache.bytes <= 2_000_000
    assert 0 < len(shoppers._user_cache) < 60
    assert shoppers._user_lookup("big-59", experiment_id=0, epoch=0)[1] == big_attributes(59)  # served from the cache, intact


@pytest.mark.django_db
def test_a_returning_user_within_the_ttl_is_served_from_the_cache(settings, django_assert_num_queries):
    settings.RECSITE = {**settings.RECSITE, "USER_CACHE_TTL_S": 60.0, "SERVING_REFRESH": "background"}
    ShopUser.objects.create(external_id="regular", attributes={"segment": "a"})
    shoppers._user_cache.clear()
    shoppers._user_lookup("regular", experiment_id=0, epoch=0)

    with django_assert_num_queries(0):
        again = shoppers._user_lookup("regular", experiment_id=0, epoch=0)

    assert again[1] == {"segment": "a"}


def test_the_slot_memo_is_bounded_and_skips_long_tokens():
    features._slots.clear()
    long_token = "x" * (features.SLOT_CACHE_MAX_TOKEN + 1)

    for i in range(60_000):
        features._slot(f"attr=value-{i:06d}-{'y' * 80}", 64)
    first = features._slot(long_token, 64)

    assert features._slots.bytes <= features.SLOT_CACHE_MAX_BYTES
    assert features._slots.peek((long_token, 64)) is None
    assert first == features._slot_hash(long_token, 64)
    assert len(features._slots) > 1_000


def test_the_slot_memo_ages_out():
    clock = Clock()
    memo = BoundedCache(max_bytes=10**9, ttl_s=features.SLOT_CACHE_TTL_S, clock=clock)
    memo.put(("old", 8), (1, 1.0), size=100)

    clock.now += features.SLOT_CACHE_TTL_S + 1
    memo.put(("new", 8), (2, 1.0), size=100)

    assert memo.peek(("old", 8)) is None
