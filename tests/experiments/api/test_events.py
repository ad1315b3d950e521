"""POST /api/v1/events: idempotent business events, attributed to the serving arm, counted in the outcome rollup."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from experiments.api.openapi import openapi_document
from experiments.models import ArmUserOutcome, ArmUserStat, BusinessEvent, EventAttribution, Experiment, Impression
from experiments.services.impression_ids import impression_id_decode, impression_id_encode
from tests.support.serving import catalogue_make, experiment_make, post_json, schema_check

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("serving_inline")]

URL = "/api/v1/events"
DOC = openapi_document()


@pytest.fixture
def served(client):
    """alice was served three items by one arm of the running experiment ``exp``."""
    catalogue_make(n=10)
    experiment_make()
    return post_json(client, "/api/v1/recommendations", {"user_id": "alice", "k": 3}).json()


def outcome() -> tuple[int, int, int, int, Decimal]:
    row = ArmUserOutcome.objects.get()
    return row.arm.name, row.views, row.carts, row.purchases, row.revenue


def test_a_purchase_through_its_impression_is_created_and_counted(client, served):
    item = served["items"][0]
    response = post_json(client, URL, {"user_id": "alice", "type": "purchase", "item_id": item["item_id"],
                                       "value": 19.99, "impression_id": item["impression_id"], "event_id": "o-1"})

    assert response.status_code == 201
    schema_check(DOC, "BusinessEvent", response.json())
    body = response.json()
    assert (body["created"], body["counted"], body["late"], body["value"]) == (True, True, False, 19.99)
    assert body["attributions"] == [{"experiment": "exp", "arm": served["arm"], "epoch": 0, "late": False,
                                     "counted": True}]
    assert outcome() == (served["arm"], 0, 0, 1, Decimal("19.99"))


def test_a_repeated_event_id_is_a_200_with_the_stored_event_and_counts_once(client, served):
    body = {"user_id": "alice", "type": "purchase", "value": 5, "event_id": "o-1"}
    first = post_json(client, URL, body)
    second = post_json(client, URL, body)

    assert (first.status_code, second.status_code) == (201, 200)
    schema_check(DOC, "BusinessEvent", second.json())
    assert second.json() == {**first.json(), "created": False}
    assert (BusinessEvent.objects.count(), ArmUserOutcome.objects.get().purchases) == (1, 1)


def test_the_same_event_id_for_another_event_is_a_409(client, served):
    post_json(client, URL, {"user_id": "alice", "type": "purchase", "value": 5, "event_id": "o-1"})
    response = post_json(client, URL, {"user_id": "alice", "type": "purchase", "value": 6, "event_id": "o-1"})

    assert (response.status_code, response.json()["error"]["code"]) == (409, "event_id_conflict")
    schema_check(DOC, "Error", response.json())
    assert ArmUserOutcome.objects.get().revenue == Decimal("5.00")


def test_events_without_event_id_are_each_recorded(client, served):
    for _ in range(2):
        assert post_json(client, URL, {"user_id": "alice", "type": "add_to_cart"}).status_code == 201
    assert (BusinessEvent.objects.count(), ArmUserOutcome.objects.get().carts) == (2, 2)


def test_without_impression_the_event_goes_to_the_arm_that_served_the_user(client, served):
    response = post_json(client, URL, {"user_id": "alice", "type": "view", "item_id": "item-00001"})

    assert [a["arm"] for a in response.json()["attributions"]] == [served["arm"]]
    assert outcome() == (served["arm"], 1, 0, 0, Decimal("0.00"))
    # Its rollup row has the key of the user's impressions: conversion = purchasers / users of ArmUserStat.
    stat = ArmUserStat.objects.get()
    assert (stat.arm_id, stat.user_id, stat.epoch) == tuple(
        ArmUserOutcome.objects.values_list("arm_id", "user_id", "epoch").get())


def test_the_latest_serve_wins_after_a_move_and_the_epoch_is_the_serves(client, served):
    # alice's arm is paused: she moves to the other arm on her next request, in a new allocation period.
    first_arm = served["arm"]
    experiment = Experiment.objects.get()
    experiment.arms.filter(name=first_arm).update(status="paused")
    Experiment.objects.filter(pk=experiment.pk).update(allocation_epoch=1)
    second = post_json(client, "/api/v1/recommendations", {"user_id": "alice", "k": 3}).json()
    assert second["arm"] != first_arm

    response = post_json(client, URL, {"user_id": "alice", "type": "purchase", "value": 10})

    assert response.json()["attributions"][0] == {"experiment": "exp", "arm": second["arm"], "epoch": 1,
                                                   "late": False, "counted": True}
    # Through the first serve's impression, the event still counts for the arm that showed it, in its period.
    through = post_json(client, URL, {"user_id": "alice", "type": "purchase", "value": 1,
                                      "impression_id": served["items"][0]["impression_id"]})
    assert (through.json()["attributions"][0]["arm"], through.json()["attributions"][0]["epoch"]) == (first_arm, 0)


def test_an_event_long_after_the_last_serve_is_stored_and_attributed_to_nothing(client, served, settings):
    Impression.objects.update(served_at=timezone.now() - timedelta(seconds=settings.RECSITE["ATTRIBUTION_WINDOW_S"] + 60))
    response = post_json(client, URL, {"user_id": "alice", "type": "purchase", "value": 3})

    assert (response.status_code, response.json()["attributions"], response.json()["counted"]) == (201, [], False)
    assert (BusinessEvent.objects.count(), ArmUserOutcome.objects.exists()) == (1, False)


def test_an_unserved_user_is_created_and_the_event_kept(client, served):
    response = post_json(client, URL, {"user_id": "bob", "type": "view"})
    assert (response.status_code, response.json()["attributions"]) == (201, [])


def test_an_event_through_an_old_impression_is_late_and_not_counted(client, served, settings):
    item = served["items"][0]
    Impression.objects.filter(pk=impression_id_decode(item["impression_id"])).update(
        served_at=timezone.now() - timedelta(seconds=settings.RECSITE["ATTRIBUTION_WINDOW_S"] + 60))
    response = post_json(client, URL, {"user_id": "alice", "type": "purchase", "value": 2,
                                       "impression_id": item["impression_id"]})

    assert response.status_code == 201
    assert (response.json()["late"], response.json()["counted"]) == (True, False)
    assert (EventAttribution.objects.get().late, ArmUserOutcome.objects.exists()) == (True, False)


def test_an_event_well_before_its_impression_is_late(client, served):
    item = served["items"][0]
    response = post_json(client, URL, {"user_id": "alice", "type": "add_to_cart", "impression_id": item["impression_id"],
                                       "ts": (timezone.now() - timedelta(hours=1)).isoformat()})
    assert response.json()["late"] is True


def test_a_ts_in_the_past_attributes_by_the_serves_of_that_time(client, served, settings):
    Impression.objects.update(served_at=timezone.now() - timedelta(days=2))
    ts = (timezone.now() - timedelta(days=2) + timedelta(minutes=5)).isoformat()
    response = post_json(client, URL, {"user_id": "alice", "type": "purchase", "value": 4, "ts": ts})

    assert [a["arm"] for a in response.json()["attributions"]] == [served["arm"]]


def test_the_rollup_is_written_in_the_transaction_of_the_event(client, served):
    with CaptureQueriesContext(connection) as queries:
        post_json(client, URL, {"user_id": "alice", "type": "purchase", "value": 1})
    sql = [q["sql"] for q in queries.captured_queries]
    begin = next(i for i, q in enumerate(sql) if q.startswith("SAVEPOINT") or q == "BEGIN")
    insert = next(i for i, q in enumerate(sql) if "INSERT INTO experiments_businessevent" in q)
    rollup = next(i for i, q in enumerate(sql) if "INSERT INTO experiments_armuseroutcome" in q)
    end = next(i for i, q in enumerate(sql) if q.startswith("RELEASE SAVEPOINT") or q == "COMMIT")
    assert begin < insert < rollup < end


def test_a_failing_rollup_leaves_nothing_half_written(client, served, monkeypatch):
    from experiments.services import business_events

    # The rollup's last statement breaks a constraint (negative revenue) after the event and attribution rows.
    broken = business_events._ROLLUP_SQL.replace("VALUES (%s, %s, %s, %s, %s, %s, %s)",
                                                 "VALUES (%s, %s, %s, %s, %s, %s, -1 - %s)")
    monkeypatch.setattr(business_events, "_ROLLUP_SQL", broken)
    response = post_json(client, URL, {"user_id": "alice", "type": "purchase", "value": 1, "event_id": "o-9"})

    assert (response.status_code, response.json()["error"]["code"]) == (409, "conflict")  # never a 500
    assert (BusinessEvent.objects.exists(), EventAttribution.objects.exists()) == (False, False)


def test_another_users_impression_is_a_404(client, served):
    response = post_json(client, URL, {"user_id": "mallory", "type": "purchase", "value": 1,
                                       "impression_id": served["items"][0]["impression_id"]})
    assert (response.status_code, response.json()["error"]["code"]) == (404, "impression_not_found")
    assert not BusinessEvent.objects.exists()


def test_an_unknown_impression_is_a_404_like_clicks(client, served):
    unknown = impression_id_encode(impression_id_decode(served["items"][0]["impression_id"]) + 1000)
    response = post_json(client, URL, {"user_id": "alice", "type": "view", "impression_id": unknown})
    schema_check(DOC, "Error", response.json())
    assert (response.status_code, response.json()["error"]["field"]) == (404, "impression_id")


def test_an_unknown_item_is_a_404(client, served):
    response = post_json(client, URL, {"user_id": "alice", "type": "view", "item_id": "no-such-item"})
    schema_check(DOC, "Error", response.json())
    assert (response.status_code, response.json()["error"]) == (
        404, {"code": "item_not_found", "message": "no such item in the catalogue", "field": "item_id"})


@pytest.mark.parametrize("patch, code, field", [
    ({"user_id": None}, "required", "user_id"),
    ({"user_id": ""}, "blank", "user_id"),
    ({"type": None}, "required", "type"),
    ({"type": 3}, "invalid_type", "type"),
    ({"type": "refund"}, "unknown_type", "type"),
    ({"value": -1}, "out_of_range", "value"),
    ({"value": 1e12}, "out_of_range", "value"),
    ({"value": 1.999}, "too_precise", "value"),
    ({"value": "12.50"}, "invalid_type", "value"),
    ({"value": True}, "invalid_type", "value"),
    ({"item_id": 7}, "invalid_type", "item_id"),
    ({"event_id": ""}, "blank", "event_id"),
    ({"event_id": "x" * 256}, "too_long", "event_id"),
    ({"impression_id": 5}, "invalid_type", "impression_id"),
    ({"impression_id": "A" * 65}, "too_long", "impression_id"),
    ({"ts": "yesterday"}, "invalid", "ts"),
    ({"ts": "2026-01-01T00:00:00"}, "invalid", "ts"),
    ({"ts": 1700000000}, "invalid_type", "ts"),
    ({"ts": "2999-01-01T00:00:00Z"}, "ts_in_future", "ts"),
    ({"ts": "2001-01-01T00:00:00+00:00"}, "ts_too_old", "ts"),
])
def test_every_bad_input_is_a_400_naming_its_field_and_writes_nothing(client, served, patch, code, field):
    body = {"user_id": "alice", "type": "purchase", "value": 1, **patch}
    response = post_json(client, URL, body)

    assert (response.status_code, response.json()["error"]["code"], response.json()["error"]["field"]) == (
        400, code, field)
    schema_check(DOC, "Error", response.json())
    assert not BusinessEvent.objects.exists()


@pytest.mark.parametrize("raw", [b'{"user_id": "alice", "type": "purchase", "value": NaN}',
                                 b'{"user_id": "alice", "type": "purchase", "value": Infinity}', b"[]", b"nope"])
def test_nan_and_non_objects_are_a_400(client, served, raw):
    response = post_json(client, URL, raw)
    schema_check(DOC, "Error", response.json())
    assert response.status_code == 400
    assert not BusinessEvent.objects.exists()


def test_the_documented_statuses_cover_what_the_endpoint_answers():
    responses = DOC["paths"]["/api/v1/events"]["post"]["responses"]
    assert {"200", "201", "400", "401", "403", "404", "405", "409", "413", "503"} <= set(responses)


def test_a_get_is_a_json_405(client):
    response = client.get(URL)
    schema_check(DOC, "Error", response.json())
    assert response.status_code == 405


KEY = "k3y-0123456789abcdef"


def test_with_a_key_configured_events_need_it(client, served, settings):
    settings.RECSITE = {**settings.RECSITE, "API_KEY": KEY}
    body = {"user_id": "alice", "type": "purchase", "value": 1}

    missing = post_json(client, URL, body)
    wrong = post_json(client, URL, body, **{"X-API-Key": "nope"})
    keyed = post_json(client, URL, body, Authorization=f"Bearer {KEY}")

    assert (missing.status_code, wrong.status_code, keyed.status_code) == (401, 403, 201)
    assert BusinessEvent.objects.count() == 1


def test_without_a_key_events_are_closed_unless_ingestion_is_public(client, served, settings):
    settings.RECSITE = {**settings.RECSITE, "API_KEY": "", "PUBLIC_INGEST": False}
    response = post_json(client, URL, {"user_id": "alice", "type": "purchase", "value": 1})

    schema_check(DOC, "Error", response.json())
    assert (response.status_code, response.json()["error"]["code"]) == (403, "ingestion_closed")
    assert not BusinessEvent.objects.exists()
