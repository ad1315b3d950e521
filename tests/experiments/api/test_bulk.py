"""POST /api/v1/items and /api/v1/users: bulk upserts with per-row errors and the optional API key."""

from decimal import Decimal

import pytest

from experiments.api.openapi import openapi_document
from experiments.models import Item, ShopUser
from tests.support.serving import post_json, schema_check

pytestmark = pytest.mark.django_db


def test_items_are_created_then_updated(client):
    rows = [{"item_id": f"sku-{i}", "title": "T", "category": "shoes", "price": 9.99, "features": {"c": "red"}}
            for i in range(3)]
    first = post_json(client, "/api/v1/items", {"items": rows})
    rows[0]["price"] = 5
    second = post_json(client, "/api/v1/items", {"items": rows})
    schema_check(openapi_document(), "UpsertResult", second.json())
    assert (first.json()["created"], second.json()["created"], second.json()["updated"]) == (3, 0, 3)
    assert Item.objects.get(external_id="sku-0").price == Decimal("5.00")


def test_an_item_can_be_deactivated(client):
    post_json(client, "/api/v1/items", {"items": [{"item_id": "sku-1"}]})
    post_json(client, "/api/v1/items", {"items": [{"item_id": "sku-1", "active": False}]})
    assert Item.objects.get(external_id="sku-1").active is False


def test_ten_thousand_rows_in_one_call(client):
    response = post_json(client, "/api/v1/items", {"items": [{"item_id": f"i{i}"} for i in range(10_000)]})
    assert (response.status_code, Item.objects.count()) == (200, 10_000)


def test_more_than_ten_thousand_rows_are_refused(client):
    response = post_json(client, "/api/v1/items", {"items": [{"item_id": f"i{i}"} for i in range(10_001)]})
    assert (response.status_code, response.json()["error"]["code"]) == (400, "too_many_rows")
    assert not Item.objects.exists()


def test_duplicate_ids_in_one_call_are_a_row_error(client):
    response = post_json(client, "/api/v1/items", {"items": [{"item_id": "x"}, {"item_id": "x"}]})
    assert [e["code"] for e in response.json()["errors"]] == ["duplicate"]


def test_items_must_be_a_list(client):
    response = post_json(client, "/api/v1/items", {"items": {"item_id": "x"}})
    assert (response.status_code, response.json()["error"]["field"]) == (400, "items")


def test_users_are_upserted_with_attributes(client):
    post_json(client, "/api/v1/users", {"users": [{"user_id": "u1", "attributes": {"segment": "a"}}]})
    response = post_json(client, "/api/v1/users", {"users": [{"user_id": "u1", "attributes": {"segment": "b"}},
                                                             {"user_id": "u2"}]})
    assert (response.json()["created"], response.json()["updated"]) == (1, 1)
    assert ShopUser.objects.get(external_id="u1").attributes == {"segment": "b"}


def test_user_rows_with_bad_attributes_write_nothing(client):
    response = post_json(client, "/api/v1/users", {"users": [{"user_id": "u1"}, {"user_id": "u2", "attributes": 7}]})
    assert (response.status_code, response.json()["error"]["field"]) == (400, "users[1].attributes")
    assert not ShopUser.objects.exists()


def test_a_configured_api_key_is_required(client, settings):
    settings.RECSITE = {**settings.RECSITE, "API_KEY": "s3cret"}
    response = post_json(client, "/api/v1/items", {"items": [{"item_id": "x"}]})
    assert (response.status_code, response.json()["error"]["code"]) == (401, "unauthenticated")


def test_a_wrong_api_key_is_forbidden(client, settings):
    settings.RECSITE = {**settings.RECSITE, "API_KEY": "s3cret"}
    response = post_json(client, "/api/v1/items", {"items": [{"item_id": "x"}]}, **{"X-API-Key": "nope"})
    assert response.status_code == 403


def test_the_api_key_as_a_header(client, settings):
    settings.RECSITE = {**settings.RECSITE, "API_KEY": "s3cret"}
    response = post_json(client, "/api/v1/users", {"users": [{"user_id": "x"}]}, **{"X-API-Key": "s3cret"})
    assert response.status_code == 200


def test_the_api_key_as_a_bearer_token(client, settings):
    settings.RECSITE = {**settings.RECSITE, "API_KEY": "s3cret"}
    response = post_json(client, "/api/v1/items", {"items": [{"item_id": "x"}]}, Authorization="Bearer s3cret")
    assert response.status_code == 200
