"""Malformed input: one test per case, each a 4xx with the error shape and nothing written."""

import json

import pytest

from experiments.api.openapi import openapi_document
from experiments.models import Impression, Item, ShopUser
from tests.support.serving import catalogue_make, experiment_make, post_json, schema_check

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("serving_inline")]

URL = "/api/v1/recommendations"


@pytest.fixture
def served():
    catalogue_make(n=10)
    return experiment_make()


def refused(response, status, field):
    body = response.json()
    schema_check(openapi_document(), "Error", body)
    assert (response.status_code, body["error"]["field"]) == (status, field)
    assert Impression.objects.count() == 0
    return body["error"]["code"]


def test_missing_user_id(client, served):
    assert refused(post_json(client, URL, {"k": 3}), 400, "user_id") == "required"


def test_user_id_of_the_wrong_type(client, served):
    assert refused(post_json(client, URL, {"user_id": 42}), 400, "user_id") == "invalid_type"


def test_blank_user_id(client, served):
    assert refused(post_json(client, URL, {"user_id": "   "}), 400, "user_id") == "blank"


def test_very_long_user_id(client, served):
    assert refused(post_json(client, URL, {"user_id": "ü" * 256}), 400, "user_id") == "too_long"


def test_user_id_with_a_nul_character(client, served):
    assert refused(post_json(client, URL, {"user_id": "a\x00b"}), 400, "user_id") == "invalid"


def test_user_id_with_a_lone_surrogate(client, served):
    assert refused(post_json(client, URL, '{"user_id": "a\\ud800"}'), 400, "user_id") == "invalid"


def test_k_of_the_wrong_type(client, served):
    assert refused(post_json(client, URL, {"user_id": "u", "k": "10"}), 400, "k") == "invalid_type"


def test_k_as_a_boolean(client, served):
    assert refused(post_json(client, URL, {"user_id": "u", "k": True}), 400, "k") == "invalid_type"


def test_k_as_a_float(client, served):
    assert refused(post_json(client, URL, {"user_id": "u", "k": 2.5}), 400, "k") == "invalid_type"


def test_negative_k(client, served):
    assert refused(post_json(client, URL, {"user_id": "u", "k": -1}), 400, "k") == "out_of_range"


def test_zero_k(client, served):
    assert refused(post_json(client, URL, {"user_id": "u", "k": 0}), 400, "k") == "out_of_range"


def test_huge_k(client, served):
    assert refused(post_json(client, URL, {"user_id": "u", "k": 10**30}), 400, "k") == "out_of_range"


def test_context_that_is_not_an_object(client, served):
    assert refused(post_json(client, URL, {"user_id": "u", "context": [1]}), 400, "context") == "invalid_type"


def test_user_attributes_that_are_not_an_object(client, served):
    assert refused(post_json(client, URL, {"user_id": "u", "user": "vip"}), 400, "user") == "invalid_type"
    assert not ShopUser.objects.exists()


def test_user_attributes_with_a_nul_character(client, served):
    assert refused(post_json(client, URL, {"user_id": "u", "user": {"k": "\x00"}}), 400, "user") == "invalid"


def test_experiment_of_the_wrong_type(client, served):
    assert refused(post_json(client, URL, {"user_id": "u", "experiment": 3}), 400, "experiment") == "invalid_type"


def test_empty_catalogue(client):
    experiment_make()
    assert refused(post_json(client, URL, {"user_id": "u"}), 400, None) == "empty_catalogue"
    assert not ShopUser.objects.exists()


def test_invalid_json(client, served):
    assert refused(post_json(client, URL, b'{"user_id": "u",'), 400, None) == "invalid_json"


def test_nan_is_invalid_json(client, served):
    assert refused(post_json(client, URL, b'{"user_id": "u", "k": NaN}'), 400, None) == "invalid_json"


def test_invalid_utf8_is_invalid_json(client, served):
    assert refused(post_json(client, URL, b'{"user_id": "\xff\xfe"}'), 400, None) == "invalid_json"


def test_deeply_nested_json(client, served):
    body = '{"user_id": "u", "context": ' + "[" * 20_000 + "]" * 20_000 + "}"
    assert refused(post_json(client, URL, body), 400, None) == "invalid_json"


def test_nesting_beyond_the_limit(client, served):
    body = {"user_id": "u", "context": {"a": [[[[[[[[[[1]]]]]]]]]]}}
    assert refused(post_json(client, URL, body), 400, "context") == "too_deep"


def test_empty_body(client, served):
    assert refused(post_json(client, URL, b""), 400, None) == "invalid_json"


def test_body_that_is_not_an_object(client, served):
    assert refused(post_json(client, URL, [{"user_id": "u"}]), 400, None) == "invalid_type"


def test_oversized_body(client, served):
    body = json.dumps({"user_id": "u", "context": {"pad": "x" * 70_000}})
    assert refused(post_json(client, URL, body), 413, None) == "body_too_large"


def test_wrong_method(client, served):
    response = client.get(URL)
    assert (response.status_code, response["Allow"]) == (405, "POST")
    assert refused(response, 405, None) == "method_not_allowed"


def test_unknown_api_path_is_a_json_404(client):
    response = client.get("/api/v1/no-such-thing")
    assert refused(response, 404, None) == "not_found"


def test_bulk_items_with_a_bad_row_write_nothing(client):
    rows = [{"item_id": "ok-1"}, {"item_id": "ok-2", "price": -3}, {"title": "no id"}]
    response = post_json(client, "/api/v1/items", {"items": rows})
    body = response.json()
    assert [(e["index"], e["field"]) for e in body["errors"]] == [(1, "items[1].price"), (2, "items[2].item_id")]
    assert refused(response, 400, "items[1].price") == "out_of_range"
    assert not Item.objects.exists()
