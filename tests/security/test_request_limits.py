"""Abuse of the JSON API: oversized bodies are refused before parsing, k is bounded, nesting and row counts too.

Every refusal is a 4xx in the error shape and writes nothing.
"""

import json

import pytest

from experiments.models import Impression, Item
from tests.support.serving import catalogue_make, experiment_make, post_json, serving_inline  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def arena(serving_inline):  # noqa: F811
    experiment_make(slug="limits")
    catalogue_make(n=30)


def error_of(response) -> tuple[int, str, str | None]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["field"]


@pytest.mark.parametrize("path", ["/api/v1/recommendations", "/api/v1/clicks"])
def test_event_bodies_over_64_kib_are_413(client, arena, path):
    body = json.dumps({"user_id": "u", "impression_id": 1, "context": {"pad": "x" * (64 * 1024)}})

    assert error_of(post_json(client, path, body))[:2] == (413, "body_too_large")
    assert Impression.objects.count() == 0


@pytest.mark.parametrize("path,key", [("/api/v1/items", "items"), ("/api/v1/users", "users")])
def test_bulk_bodies_over_the_upload_limit_are_413(client, settings, arena, path, key):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    before = Item.objects.count()
    rows = [{"item_id" if key == "items" else "user_id": f"r{i:06d}", "title" if key == "items" else "x": "t"}
            for i in range(500)]

    response = post_json(client, path, {key: rows})

    assert error_of(response)[:2] == (413, "body_too_large")
    assert Item.objects.count() == before


def test_a_declared_length_over_the_limit_is_refused_without_reading(client, arena):
    response = client.post("/api/v1/recommendations", b"{}", content_type="application/json",
                           CONTENT_LENGTH=str(10 * 1024 * 1024))

    assert error_of(response)[:2] == (413, "body_too_large")


@pytest.mark.parametrize("k", [0, -1, 101, 10**30, "5", 2.5, True, None, [5], {"k": 5}])
def test_k_outside_1_to_max_k_or_not_an_integer_is_400(client, arena, k):
    response = post_json(client, "/api/v1/recommendations", {"user_id": "u", "k": k})

    assert error_of(response)[0::2] == (400, "k")
    assert Impression.objects.count() == 0


def test_k_is_capped_by_max_k_setting(client, settings, arena):
    settings.RECSITE = {**settings.RECSITE, "MAX_K": 5}

    too_many = post_json(client, "/api/v1/recommendations", {"user_id": "u", "k": 6})
    most = post_json(client, "/api/v1/recommendations", {"user_id": "u", "k": 5})

    assert error_of(too_many) == (400, "out_of_range", "k")
    assert len(most.json()["items"]) == 5


def test_k_larger_than_the_catalogue_serves_the_catalogue(client, arena):
    response = post_json(client, "/api/v1/recommendations", {"user_id": "u", "k": 100})

    assert len(response.json()["items"]) == 30


def test_absurd_nesting_is_400_not_a_recursion_crash(client, arena):
    deep_body = "[" * 200_000 + "]" * 200_000
    deep_context = {"user_id": "u", "context": {}}
    node = deep_context["context"]
    for _ in range(20):
        node["n"] = {}
        node = node["n"]

    assert error_of(post_json(client, "/api/v1/recommendations", deep_body))[:2] in ((400, "invalid_json"),
                                                                                    (413, "body_too_large"))
    assert error_of(post_json(client, "/api/v1/recommendations", "[" * 30_000 + "]" * 30_000))[:2] == (
        400, "invalid_json")
    assert error_of(post_json(client, "/api/v1/recommendations", deep_context)) == (400, "too_deep", "context")


def test_more_rows_than_max_bulk_rows_is_400_and_writes_nothing(client, settings, arena):
    settings.RECSITE = {**settings.RECSITE, "MAX_BULK_ROWS": 5}
    before = Item.objects.count()

    response = post_json(client, "/api/v1/items", {"items": [{"item_id": f"n{i}"} for i in range(6)]})

    assert error_of(response) == (400, "too_many_rows", "items")
    assert Item.objects.count() == before
