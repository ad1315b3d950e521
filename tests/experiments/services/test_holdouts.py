"""Holdouts through the real serve path and Postgres: the held-out share sees the baseline, a promotion keeps
them there, the baseline cannot be paused, re-weighted or promoted, and ending the holdout (audited) moves them."""

import json

import pytest
from django.test import Client

from experiments.errors import ApplicationError
from experiments.models import AllocationEpoch, Decision, Experiment
from experiments.selectors.experiments import experiment_summary
from experiments.selectors.rollups import arm_effective_weights
from experiments.services import decisions, lifecycle
from experiments.services.assignment import holdout_bucket_of
from experiments.services.events import recommendation_serve
from experiments.services.holdouts import holdout_end
from experiments.services.tokens import api_token_issue
from tests.experiments.stats_support import fast_passwords, make_login  # noqa: F401  (autouse)
from tests.support.serving import catalogue_make, serving_inline  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db

USERS = [f"shopper-{i}" for i in range(300)]
ARMS = [lifecycle.ArmSpec("base", "popularity"), lifecycle.ArmSpec("a", "popularity"),
        lifecycle.ArmSpec("b", "popularity")]


@pytest.fixture
def boss():
    return make_login(username="boss", promoter=True)


@pytest.fixture
def held(boss, serving_manual):
    catalogue_make(n=5)
    experiment = lifecycle.experiment_create(slug="held", arms=ARMS, control="a", user=boss,
                                             holdout={"arm": "base", "share": 0.2})
    lifecycle.experiment_start(experiment=experiment, user=boss)
    serving_manual.refresh()
    experiment.refresh_from_db()
    return experiment, {a.name: a for a in experiment.arms.all()}


def serve(users) -> dict[str, str]:
    return {u: recommendation_serve(user_id=u, k=2, experiment_slug="held").arm for u in users}


def test_the_held_out_users_see_the_baseline_and_no_one_else_does(held):
    experiment, arms = held
    served = serve(USERS)
    expected = {u for u in USERS if holdout_bucket_of(salt=experiment.salt, user_id=u) < 2_000}
    assert {u for u, arm in served.items() if arm == "base"} == expected and expected
    assert arms["base"].weight == 0.0
    assert arm_effective_weights(experiment=experiment, arms=list(arms.values())) == pytest.approx(
        {"base": 0.2, "a": 0.4, "b": 0.4})
    summary = experiment_summary(experiment=experiment)
    assert summary["holdout"] == {"arm": "base", "share": 0.2, "running": True, "ended_at": None}
    assert {a["name"]: a["share"] for a in summary["arms"]} == pytest.approx({"base": 0.2, "a": 0.4, "b": 0.4})


def test_a_promotion_keeps_the_holdout_until_the_operator_ends_it(held, boss, serving_manual):
    experiment, arms = held
    before = serve(USERS)
    kept = {u for u, arm in before.items() if arm == "base"}

    decisions.arm_promote(experiment=experiment, arm=arms["b"], user=boss, reason="b wins")
    serving_manual.refresh()
    promoted = serve(USERS)
    assert {u for u, arm in promoted.items() if arm == "base"} == kept
    assert {promoted[u] for u in USERS if u not in kept} == {"b"}

    decision = holdout_end(experiment=experiment, user=boss, reason="long-term readout done")
    serving_manual.refresh()
    assert set(serve(USERS).values()) == {"b"}
    experiment.refresh_from_db()
    assert (decision.action, decision.arm.name, experiment.holdout_running) == (Decision.Action.HOLDOUT_END, "base", False)
    assert AllocationEpoch.objects.get(experiment=experiment, epoch=experiment.allocation_epoch).weights == {
        "base": 0.0, "a": 0.0, "b": 1.0}
    with pytest.raises(ApplicationError) as err:
        holdout_end(experiment=experiment, user=boss, reason="again")
    assert (err.value.code, err.value.status) == ("no_holdout", 409)


def test_the_baseline_is_not_paused_reweighted_or_promoted_while_the_holdout_runs(held, boss):
    experiment, arms = held
    for call in (lambda: decisions.arm_pause(arm=arms["base"], user=boss, reason="x"),
                 lambda: decisions.arm_reweight(arm=arms["base"], weight=1.0, user=boss, reason="x"),
                 lambda: decisions.arm_promote(experiment=experiment, arm=arms["base"], user=boss, reason="x")):
        with pytest.raises(ApplicationError) as err:
            call()
        assert (err.value.code, err.value.status) == ("holdout_arm", 409)
    decisions.arm_pause(arm=arms["b"], user=boss, reason="the others still can be")


def test_without_a_winner_ending_the_holdout_moves_its_users_by_the_weights(held, boss, serving_manual):
    experiment, _ = held
    before = serve(USERS)
    holdout_end(experiment=experiment, user=boss, reason="enough")
    serving_manual.refresh()
    after = serve(USERS)
    assert {u for u in USERS if before[u] != after[u]} == {u for u in USERS if before[u] == "base"}
    assert set(after.values()) == {"a", "b"}


@pytest.mark.parametrize("holdout, code", [
    ({"arm": "ghost", "share": 0.1}, "unknown_arm"),
    ({"arm": "base", "share": 0.6}, "invalid_share"),
    ({"arm": "base", "share": 0}, "invalid_share"),
    ({"arm": "base"}, "invalid_share"),
    ({"arm": "base", "share": 0.1, "extra": 1}, "unknown_field"),
    ("base", "invalid_holdout"),
])
def test_bad_holdouts_are_refused_and_nothing_is_written(boss, holdout, code):
    with pytest.raises(ApplicationError) as err:
        lifecycle.experiment_create(slug="x", arms=ARMS, user=boss, holdout=holdout)
    assert err.value.code == code
    with pytest.raises(ApplicationError) as err:
        lifecycle.experiment_create(slug="x", arms=ARMS, mode="interleaved", user=boss,
                                    holdout={"arm": "base", "share": 0.1})
    assert err.value.code == "invalid_holdout"
    assert not Experiment.objects.exists()


@pytest.mark.usefixtures("serving_inline")
def test_the_api_creates_a_held_out_experiment_and_ends_its_holdout(boss):
    from tests.experiments.api.test_operator import documented

    client = Client(enforce_csrf_checks=True)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {api_token_issue(user=boss, name='ci')[1]}"}

    def post(path, body):
        return client.post(path, json.dumps(body), content_type="application/json", **auth)

    body = {"slug": "api-held", "arms": [{"name": "base", "kind": "popularity"}, {"name": "new", "kind": "popularity"}],
            "control": "base", "holdout": {"arm": "base", "share": 0.1}}
    created = documented("/api/v1/experiments", "post", post("/api/v1/experiments", body), "ExperimentSummary")
    assert created["holdout"]["share"] == 0.1 and created["arms"][0]["weight"] == 0.0
    ended = post("/api/v1/experiments/api-held/holdout/end", {"reason": "not needed"})
    result = documented("/api/v1/experiments/{slug}/holdout/end", "post", ended, "DecisionResult")
    assert result["experiment"]["holdout"]["running"] is False
    again = post("/api/v1/experiments/api-held/holdout/end", {})
    assert documented("/api/v1/experiments/{slug}/holdout/end", "post", again)["error"]["code"] == "no_holdout"


@pytest.mark.usefixtures("serving_inline")
def test_a_draft_gets_its_holdout_later_through_the_api_and_not_after_the_start(boss):
    from tests.experiments.api.test_operator import Api, documented

    api = Api(api_token_issue(user=boss, name="ci")[1])
    catalogue_make(n=4)
    api.post("/api/v1/experiments", {"slug": "later", "arms": [{"name": "base", "kind": "popularity"}]})
    lonely = api.post("/api/v1/experiments/later/holdout", {"arm": "base", "share": 0.1})
    assert documented("/api/v1/experiments/{slug}/holdout", "post", lonely)["error"]["code"] == "invalid_holdout"
    api.post("/api/v1/experiments/later/arms", {"name": "new", "kind": "popularity"})
    set_ = documented("/api/v1/experiments/{slug}/holdout", "post",
                      api.post("/api/v1/experiments/later/holdout", {"arm": "base", "share": 0.3}), "DecisionResult")
    assert set_["experiment"]["holdout"] == {"arm": "base", "share": 0.3, "running": True, "ended_at": None}
    assert [a["weight"] for a in set_["experiment"]["arms"]] == [0.0, 1.0]
    assert Decision.objects.filter(experiment__slug="later", action=Decision.Action.HOLDOUT).count() == 1
    assert api.post("/api/v1/experiments/later/start").status_code == 200
    late = api.post("/api/v1/experiments/later/holdout", {"arm": "base", "share": 0.2})
    assert (late.status_code, late.json()["error"]["code"]) == (409, "not_draft")
