"""Optional API-key auth: off by default; with RECSITE_API_KEY the ingestion endpoints need it, and with
RECSITE_API_KEY_EVENTS=1 recommendations and clicks need it too. X-API-Key or Authorization: Bearer."""

import pytest

from experiments.models import Click, Impression, Item
from tests.support.serving import catalogue_make, experiment_make, post_json, serving_inline  # noqa: F401

pytestmark = pytest.mark.django_db

KEY = "k3y-\u00e9-0123456789abcdef"


@pytest.fixture
def arena(serving_inline):  # noqa: F811
    experiment_make(slug="keyed")
    catalogue_make(n=12)


def keyed(settings, *, events: bool) -> None:
    settings.RECSITE = {**settings.RECSITE, "API_KEY": KEY, "API_KEY_EVENTS": events}


def attempts(client, path: str, body: dict) -> dict[str, int]:
    return {
        "none": post_json(client, path, body).status_code,
        "wrong": post_json(client, path, body, **{"X-API-Key": "nope"}).status_code,
        "wrong-bearer": post_json(client, path, body, Authorization="Bearer nope").status_code,
    }


def test_without_a_key_configured_everything_is_open(client, arena):
    served = post_json(client, "/api/v1/recommendations", {"user_id": "u1", "k": 2})
    click = post_json(client, "/api/v1/clicks", {"impression_id": served.json()["items"][0]["impression_id"]})
    items = post_json(client, "/api/v1/items", {"items": [{"item_id": "new"}]})

    assert (served.status_code, click.status_code, items.status_code) == (200, 201, 200)


@pytest.mark.parametrize("path,body", [
    ("/api/v1/items", {"items": [{"item_id": "new"}]}),
    ("/api/v1/users", {"users": [{"user_id": "new"}]}),
])
def test_ingestion_needs_the_key_when_one_is_set(client, settings, arena, path, body):
    keyed(settings, events=False)

    refused = attempts(client, path, body)
    by_header = post_json(client, path, body, **{"X-API-Key": KEY})
    by_bearer = post_json(client, path, body, Authorization=f"Bearer {KEY}")

    assert refused == {"none": 401, "wrong": 403, "wrong-bearer": 403}
    assert (by_header.status_code, by_bearer.status_code) == (200, 200)


def test_refused_ingestion_writes_nothing(client, settings, arena):
    keyed(settings, events=False)
    before = Item.objects.count()

    response = post_json(client, "/api/v1/items", {"items": [{"item_id": "intruder"}]}, **{"X-API-Key": "nope"})

    assert response.json()["error"]["code"] == "forbidden"
    assert Item.objects.count() == before


def test_events_stay_open_with_a_key_unless_configured(client, settings, arena):
    keyed(settings, events=False)

    served = post_json(client, "/api/v1/recommendations", {"user_id": "u1", "k": 2})
    click = post_json(client, "/api/v1/clicks", {"impression_id": served.json()["items"][0]["impression_id"]})

    assert (served.status_code, click.status_code) == (200, 201)


def test_events_need_the_key_when_configured(client, settings, arena):
    keyed(settings, events=True)

    refused_serve = attempts(client, "/api/v1/recommendations", {"user_id": "u1", "k": 2})
    impressions_after_refusals = Impression.objects.count()
    served = post_json(client, "/api/v1/recommendations", {"user_id": "u1", "k": 2}, **{"X-API-Key": KEY})
    impression_id = served.json()["items"][0]["impression_id"]
    refused_click = attempts(client, "/api/v1/clicks", {"impression_id": impression_id})
    clicks_after_refusals = Click.objects.count()
    click = post_json(client, "/api/v1/clicks", {"impression_id": impression_id}, Authorization=f"Bearer {KEY}")

    assert refused_serve == {"none": 401, "wrong": 403, "wrong-bearer": 403}
    assert refused_click == {"none": 401, "wrong": 403, "wrong-bearer": 403}
    assert (impressions_after_refusals, clicks_after_refusals) == (0, 0)
    assert (served.status_code, click.status_code) == (200, 201)


def test_the_key_is_checked_before_the_body_is_read(client, settings, arena):
    keyed(settings, events=True)

    response = post_json(client, "/api/v1/recommendations", b"{not json")

    assert response.status_code == 401
