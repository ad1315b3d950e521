"""Finding 3: nobody can rewrite a shopper's stored attributes through the open recommendations endpoint.

Attributes are stored only through the keyed ``POST /api/v1/users``; inline ``"user": {...}`` on a
recommendation counts for that request alone, with or without an API key configured.
"""

import pytest

from experiments import features
from experiments.models import ShopUser
from tests.support.serving import catalogue_make, experiment_make, post_json, serving_inline  # noqa: F401

pytestmark = pytest.mark.django_db

KEY = "ingest-key-0123456789"


@pytest.fixture
def keyed(settings, serving_inline):  # noqa: F811
    settings.RECSITE = {**settings.RECSITE, "API_KEY": KEY}
    experiment_make(slug="attrs")
    catalogue_make(n=10)


def store(client, user_id: str, attributes: dict) -> None:
    response = post_json(client, "/api/v1/users", {"users": [{"user_id": user_id, "attributes": attributes}]},
                         **{"X-API-Key": KEY})
    assert response.status_code == 200


def test_inline_attributes_never_overwrite_stored_ones(client, keyed):
    store(client, "victim", {"segment": "vip", "age": 40})

    response = post_json(client, "/api/v1/recommendations",
                         {"user_id": "victim", "k": 3, "user": {"segment": "banned", "age": 99}})

    assert response.status_code == 200
    assert ShopUser.objects.get(external_id="victim").attributes == {"segment": "vip", "age": 40}


def test_inline_attributes_of_a_new_user_are_not_stored(client, keyed):
    post_json(client, "/api/v1/recommendations", {"user_id": "newcomer", "k": 3, "user": {"segment": "spoofed"}})

    assert ShopUser.objects.get(external_id="newcomer").attributes == {}


def test_the_keyed_users_endpoint_is_how_attributes_change(client, keyed):
    store(client, "shopper", {"segment": "a"})
    store(client, "shopper", {"segment": "b"})

    assert ShopUser.objects.get(external_id="shopper").attributes == {"segment": "b"}


def test_inline_attributes_rank_that_request_and_stored_ones_the_next(client, keyed, monkeypatch):
    store(client, "ranked", {"segment": "stored"})
    seen: list[dict] = []
    real = features.user_features

    def spy(attributes, *, dim):
        seen.append(dict(attributes or {}))
        return real(attributes, dim=dim)

    monkeypatch.setattr(features, "user_features", spy)

    post_json(client, "/api/v1/recommendations", {"user_id": "ranked", "k": 2, "user": {"segment": "inline"}})
    post_json(client, "/api/v1/recommendations", {"user_id": "ranked", "k": 2})

    assert seen == [{"segment": "inline"}, {"segment": "stored"}]
