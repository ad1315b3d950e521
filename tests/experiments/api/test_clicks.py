"""POST /api/v1/clicks: idempotent, attribution window, rollup."""

from datetime import timedelta

import pytest
from django.utils import timezone

from experiments.api.openapi import openapi_document
from experiments.models import ArmUserStat, Click, Impression
from experiments.services.impression_ids import impression_id_decode, impression_id_encode
from tests.support.serving import catalogue_make, experiment_make, post_json, schema_check

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("serving_inline")]

URL = "/api/v1/clicks"


@pytest.fixture
def impression_id(client):
    catalogue_make(n=10)
    experiment_make()
    return post_json(client, "/api/v1/recommendations", {"user_id": "alice", "k": 3}).json()["items"][0]["impression_id"]


def test_the_first_click_is_created_and_counted(client, impression_id):
    response = post_json(client, URL, {"impression_id": impression_id})
    assert response.status_code == 201
    schema_check(openapi_document(), "Click", response.json())
    assert (response.json()["created"], response.json()["counted"]) == (True, True)
    assert ArmUserStat.objects.get().clicks == 1


def test_a_repeated_click_is_a_200_and_counted_once(client, impression_id):
    post_json(client, URL, {"impression_id": impression_id})
    response = post_json(client, URL, {"impression_id": impression_id})
    assert (response.status_code, response.json()["created"]) == (200, False)
    assert (Click.objects.count(), ArmUserStat.objects.get().clicks) == (1, 1)


def test_the_click_echoes_the_opaque_id(client, impression_id):
    assert post_json(client, URL, {"impression_id": impression_id}).json()["impression_id"] == impression_id


def test_an_unknown_impression_is_a_404(client, impression_id):
    unknown = impression_id_encode(impression_id_decode(impression_id) + 1000)  # genuinely signed, no such row
    response = post_json(client, URL, {"impression_id": unknown})
    assert (response.status_code, response.json()["error"]["field"]) == (404, "impression_id")
    assert not Click.objects.exists()


def test_a_click_after_the_window_is_stored_late_and_not_counted(client, impression_id, settings):
    Impression.objects.filter(pk=impression_id_decode(impression_id)).update(
        served_at=timezone.now() - timedelta(seconds=settings.RECSITE["ATTRIBUTION_WINDOW_S"] + 60))
    response = post_json(client, URL, {"impression_id": impression_id})
    assert response.status_code == 201
    assert (response.json()["late"], response.json()["counted"]) == (True, False)
    assert (Click.objects.get().late, ArmUserStat.objects.get().clicks) == (True, 0)


def test_the_window_is_configurable(client, impression_id, settings):
    settings.RECSITE = {**settings.RECSITE, "ATTRIBUTION_WINDOW_S": 5}
    Impression.objects.filter(pk=impression_id_decode(impression_id)).update(served_at=timezone.now() - timedelta(seconds=6))
    assert post_json(client, URL, {"impression_id": impression_id}).json()["late"] is True


def test_a_missing_impression_id_is_a_400(client, impression_id):
    response = post_json(client, URL, {})
    assert (response.status_code, response.json()["error"]["field"]) == (400, "impression_id")


@pytest.mark.parametrize("value", [1, -5, 2.5, True, ["x"], {"id": 1}])
def test_an_impression_id_that_is_not_a_string_is_a_400(client, impression_id, value):
    response = post_json(client, URL, {"impression_id": value})
    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_type")


def test_an_overlong_impression_id_is_a_400(client, impression_id):
    response = post_json(client, URL, {"impression_id": "A" * 65})
    assert (response.status_code, response.json()["error"]["code"]) == (400, "too_long")
