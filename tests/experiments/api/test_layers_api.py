"""Layers through the real URL stack: make and list layers, create experiments in them, and recommendations that
name a layer (or one of its experiments) served by the experiment owning the user's bucket; every answer against
the OpenAPI document."""

import pytest

from experiments.models import Layer
from experiments.services.assignment import bucket_of
from experiments.services.tokens import api_token_issue
from tests.experiments.api.test_operator import Api, documented
from tests.experiments.stats_support import fast_passwords, make_login  # noqa: F401  (autouse)
from tests.support.serving import catalogue_make, post_json

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("serving_inline")]

ARMS = [{"name": "a", "kind": "popularity"}, {"name": "b", "kind": "popularity"}]


@pytest.fixture
def api():
    return Api(api_token_issue(user=make_login(username="boss", promoter=True), name="ci")[1])


def test_a_layer_is_made_filled_listed_and_routes_recommendations(api, client):
    catalogue_make(n=8)
    made = documented("/api/v1/layers", "post", api.post("/api/v1/layers", {"slug": "ranking", "name": "Ranking"}),
                      "Layer")
    assert (made["experiments"], made["free_share"]) == ([], 1.0)
    for slug, share in (("r1", 0.25), ("r2", None)):
        body = {"slug": slug, "arms": ARMS, "layer": "ranking", **({"layer_share": share} if share else {})}
        created = documented("/api/v1/experiments", "post", api.post("/api/v1/experiments", body),
                             "ExperimentSummary")
        assert created["layer"]["slug"] == "ranking"
        assert api.post(f"/api/v1/experiments/{slug}/start").status_code == 200
    listed = documented("/api/v1/layers", "get", api.get("/api/v1/layers"), "LayerList")
    (layer,) = listed["layers"]
    assert [(e["slug"], e["start"], e["end"]) for e in layer["experiments"]] == [("r1", 0, 2_500), ("r2", 2_500, 10_000)]
    assert (layer["free"], layer["free_share"]) == ([], 0.0)
    full = api.post("/api/v1/experiments", {"slug": "r3", "arms": ARMS, "layer": "ranking", "layer_share": 0.1})
    assert documented("/api/v1/experiments", "post", full)["error"]["code"] == "layer_full"

    salt = Layer.objects.get(slug="ranking").salt
    for i in range(40):
        user = f"shopper-{i}"
        expected = "r1" if bucket_of(salt=salt, user_id=user) < 2_500 else "r2"
        for body in ({"user_id": user, "layer": "ranking"}, {"user_id": user, "experiment": "r1"},
                     {"user_id": user}):
            response = post_json(client, "/api/v1/recommendations", {**body, "k": 2})
            assert documented("/api/v1/recommendations", "post", response, "Recommendation")["experiment"] == expected


def test_layer_errors_follow_the_contract(api, client):
    catalogue_make(n=4)
    api.post("/api/v1/layers", {"slug": "ranking"})
    duplicate = api.post("/api/v1/layers", {"slug": "ranking"})
    assert (duplicate.status_code, documented("/api/v1/layers", "post", duplicate)["error"]["code"]) == (
        409, "layer_exists")
    bad = documented("/api/v1/layers", "post", api.post("/api/v1/layers", {"slug": "no spaces"}))
    assert bad["error"]["field"] == "slug"
    ghost = api.post("/api/v1/experiments", {"slug": "g", "arms": ARMS, "layer": "ghost"})
    assert (ghost.status_code, documented("/api/v1/experiments", "post", ghost)["error"]["code"]) == (
        404, "layer_not_found")
    api.post("/api/v1/experiments", {"slug": "half", "arms": ARMS, "layer": "ranking", "layer_share": 0.5})
    api.post("/api/v1/experiments/half/start")
    salt = Layer.objects.get(slug="ranking").salt
    outside = next(f"u{i}" for i in range(1_000) if bucket_of(salt=salt, user_id=f"u{i}") >= 5_000)
    response = post_json(client, "/api/v1/recommendations", {"user_id": outside, "layer": "ranking"})
    error = documented("/api/v1/recommendations", "post", response)["error"]
    assert (response.status_code, error["code"], error["field"]) == (409, "layer_unallocated", "layer")
    both = post_json(client, "/api/v1/recommendations", {"user_id": "u", "layer": "ranking", "experiment": "half"})
    assert (both.status_code, both.json()["error"]["code"]) == (400, "ambiguous")
    anonymous = post_json(client, "/api/v1/layers", {"slug": "x"})
    assert anonymous.status_code in (401, 403)
