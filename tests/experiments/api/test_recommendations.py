"""POST /api/v1/recommendations through the real URL stack and Postgres."""

import pytest

from experiments.api.openapi import openapi_document
from experiments.models import Arm, ArmUserStat, Assignment, Experiment, Impression, ModelCheckpoint, ShopUser
from experiments.services.impression_ids import impression_id_decode
from experiments.serving.arms import arm_build
from tests.support.serving import catalogue_make, experiment_make, post_json, schema_check

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("serving_inline")]

URL = "/api/v1/recommendations"


@pytest.fixture
def experiment():
    catalogue_make(n=30)
    return experiment_make()


def test_response_follows_the_schema(client, experiment):
    response = post_json(client, URL, {"user_id": "alice", "k": 5})
    assert response.status_code == 200
    schema_check(openapi_document(), "Recommendation", response.json())


def test_one_impression_row_per_shown_item(client, experiment):
    body = post_json(client, URL, {"user_id": "alice", "k": 7}).json()
    rows = list(Impression.objects.filter(request_id=body["request_id"]).order_by("position")
                .values_list("id", "position", "item__external_id", "arm__name", "model_version"))
    shown = [(impression_id_decode(i["impression_id"]), i["position"], i["item_id"], body["arm"], body["model_version"])
             for i in body["items"]]
    assert rows == shown


def test_impressions_store_score_and_propensity(client, experiment):
    body = post_json(client, URL, {"user_id": "alice", "k": 3}).json()
    stored = list(Impression.objects.filter(request_id=body["request_id"]).order_by("position")
                  .values_list("score", "propensity"))
    assert stored == [(i["score"], i["propensity"]) for i in body["items"]]


def test_the_rollup_counts_the_impressions(client, experiment):
    post_json(client, URL, {"user_id": "alice", "k": 4})
    post_json(client, URL, {"user_id": "alice", "k": 6})
    stat = ArmUserStat.objects.get(user__external_id="alice")
    assert (stat.impressions, stat.clicks, stat.epoch) == (10, 0, experiment.allocation_epoch)


def test_a_new_user_is_created_without_storing_inline_attributes(client, experiment):
    """Inline attributes count for the request only; they are stored through POST /api/v1/users (tests/security)."""
    post_json(client, URL, {"user_id": "bob", "user": {"segment": "s3", "age": 41}})
    assert ShopUser.objects.get(external_id="bob").attributes == {}


def test_assignment_is_sticky_and_recorded(client, experiment):
    arms = {post_json(client, URL, {"user_id": "carol"}).json()["arm"] for _ in range(5)}
    assert arms == {Assignment.objects.get(user__external_id="carol").arm.name}


def test_k_larger_than_the_catalogue_returns_every_item(client, experiment):
    body = post_json(client, URL, {"user_id": "dave", "k": 100}).json()
    assert sorted(i["position"] for i in body["items"]) == list(range(1, 31))


def test_unicode_user_ids_are_served(client, experiment):
    response = post_json(client, URL, {"user_id": "用户-🛒-ü", "k": 2})
    assert response.status_code == 200
    assert ShopUser.objects.filter(external_id="用户-🛒-ü").exists()


def test_a_concluded_experiment_serves_its_winner_to_everyone(client, experiment):
    winner = experiment.arms.get(name="b")
    Experiment.objects.filter(pk=experiment.pk).update(status="concluded", winner=winner)
    arms = {post_json(client, URL, {"user_id": f"user-{i}"}).json()["arm"] for i in range(40)}
    assert arms == {"b"}


def test_a_paused_arm_gets_no_traffic(client, experiment):
    experiment.arms.filter(name="a").update(status="paused")
    arms = {post_json(client, URL, {"user_id": f"user-{i}"}).json()["arm"] for i in range(40)}
    assert arms == {"b"}


def test_every_arm_paused_is_a_409(client, experiment):
    experiment.arms.update(status="paused")
    response = post_json(client, URL, {"user_id": "erin"})
    assert (response.status_code, response.json()["error"]["code"]) == (409, "no_active_arm")


def test_the_newest_checkpoint_serves_and_is_reported(client, experiment):
    arm = experiment.arms.get(name="a")
    experiment.arms.filter(name="b").update(status="paused")
    state = arm_build(kind=arm.kind, params=arm.params, arm_id=arm.id).to_bytes()
    ModelCheckpoint.objects.create(arm=arm, version=1, state=state)
    ModelCheckpoint.objects.create(arm=arm, version=2, state=state)
    body = post_json(client, URL, {"user_id": "frank"}).json()
    assert (body["arm"], body["model_version"]) == ("a", 2)


def test_the_experiment_can_be_named(client, experiment):
    experiment_make(slug="other", salt="salt-2", arms=(("solo", "popularity", 1.0),))
    body = post_json(client, URL, {"user_id": "gina", "experiment": "other"}).json()
    assert (body["experiment"], body["arm"]) == ("other", "solo")


def test_several_running_experiments_need_a_name(client, experiment):
    experiment_make(slug="other", salt="salt-2", arms=(("solo", "popularity", 1.0),))
    response = post_json(client, URL, {"user_id": "gina"})
    assert (response.status_code, response.json()["error"]["field"]) == (400, "experiment")


def test_an_unknown_experiment_is_a_404(client, experiment):
    response = post_json(client, URL, {"user_id": "gina", "experiment": "nope"})
    assert (response.status_code, response.json()["error"]["code"]) == (404, "experiment_not_found")


def test_no_running_experiment_is_a_409(client):
    catalogue_make(n=3)
    response = post_json(client, URL, {"user_id": "gina"})
    assert (response.status_code, response.json()["error"]["code"]) == (409, "no_running_experiment")


def test_arm_weights_split_traffic(client, experiment):
    Arm.objects.filter(experiment=experiment, name="a").update(weight=3.0)
    arms = [post_json(client, URL, {"user_id": f"u{i}", "k": 1}).json()["arm"] for i in range(200)]
    assert 0.6 < arms.count("a") / 200 < 0.9
