"""Interleaved experiments through the real serve, click and training paths on Postgres (issue 17)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from experiments.models import ArmUserStat, Assignment, Experiment, Impression, InterleaveCredit, ModelCheckpoint
from experiments.services import sessions, training
from experiments.services.clicks import click_record
from experiments.services.events import rank_context, recommendation_serve
from experiments.services.training_config import TrainingConfig
from experiments.stats.interleaving import slot_propensities
from tests.support.serving import catalogue_make, experiment_make

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("serving_manual")]


def _arena(serving_manual, arms=(("a", "popularity", 1.0), ("b", "ftrl_logreg", 1.0))) -> Experiment:
    catalogue_make(n=40)
    experiment = experiment_make(slug="il", arms=arms)
    Experiment.objects.filter(pk=experiment.pk).update(mode="interleaved")
    serving_manual.refresh()
    return experiment


def test_a_slate_mixes_both_arms_and_each_impression_names_its_contributor(serving_manual):
    experiment = _arena(serving_manual)
    served = recommendation_serve(user_id="shopper", k=10)

    rows = list(Impression.objects.filter(request_id=served.request_id).order_by("position").select_related("arm"))
    assert [r.arm.name for r in rows] == [i.arm for i in served.items]
    teams = Counter(i.arm for i in served.items)
    assert teams == {"a": 5, "b": 5}  # team draft: whole rounds of one pick each
    assert served.arm == "a+b"
    assert served.as_dict()["items"][0]["arm"] in {"a", "b"}
    assert [r.propensity for r in rows] == [i.propensity for i in served.items]
    # Each arm's contributed impressions are counted on its own rollup row; no sticky assignment is written.
    stats = dict(ArmUserStat.objects.filter(arm__experiment=experiment).values_list("arm__name", "impressions"))
    assert stats == {"a": 5, "b": 5}
    assert not Assignment.objects.filter(experiment=experiment).exists()


def test_the_logged_propensity_is_team_drafts_exact_one(serving_manual):
    experiment = _arena(serving_manual, arms=(("a", "ftrl_logreg", 1.0), ("b", "ftrl_logreg", 1.0)))
    # ε = 0: each arm's ranking is a function of its state, so the test can rank again and recompute.
    for arm, bits in (("a", 10), ("b", 12)):
        experiment.arms.filter(name=arm).update(params={"epsilon": 0.0, "hash_bits": bits})
    serving_manual.refresh()
    # Teach arm a to like the items it showed last, so the two rankings differ.
    for u in range(8):
        served = recommendation_serve(user_id=f"u{u}", k=6)
        click_record(impression_id=[i for i in served.items if i.arm == "a"][-1].impression_id)
    training.arm_train(arm_id=experiment.arms.get(name="a").id, config=TrainingConfig(batch_rows=10_000, budget_s=60.0))
    serving_manual.refresh()
    served = recommendation_serve(user_id="shopper", k=6)

    state = serving_manual.current()
    catalogue = state.catalogue
    rankings = []
    for arm in experiment.arms.order_by("id"):
        model = state.models[arm.id].model
        ctx = rank_context(model=model, user_id="shopper", attributes={}, catalogue=catalogue, session=sessions.EMPTY)
        rankings.append(model.rank(ctx, 9, np.random.default_rng(0)).indices.tolist())
    marginals = slot_propensities(rankings, 6)
    index = {ext: i for i, ext in enumerate(catalogue.external_ids)}
    assert [i.propensity for i in served.items] == [marginals[j][index[i.item_id]] for j, i in enumerate(served.items)]
    assert rankings[0] != rankings[1] and min(i.propensity for i in served.items) < 1.0


def test_a_click_credits_the_contributing_arm_once(serving_manual):
    experiment = _arena(serving_manual)
    served = recommendation_serve(user_id="shopper", k=6)
    first, other = served.items[0], next(i for i in served.items if i.arm != served.items[0].arm)
    click_record(impression_id=first.impression_id)
    click_record(impression_id=first.impression_id)  # a repeat counts once
    click_record(impression_id=other.impression_id)
    same_team = next((i for i in served.items[1:] if i.arm == first.arm), None)
    click_record(impression_id=same_team.impression_id)

    credits = dict(InterleaveCredit.objects.filter(experiment=experiment).values_list("arm__name", "clicks"))
    assert credits == {first.arm: 2, other.arm: 1}
    clicks = dict(ArmUserStat.objects.filter(arm__experiment=experiment).values_list("arm__name", "clicks"))
    assert clicks == {first.arm: 2, other.arm: 1}


def test_ab_clicks_write_no_credit(serving_manual):
    catalogue_make(n=10)
    experiment_make(slug="ab")
    serving_manual.refresh()
    served = recommendation_serve(user_id="shopper", k=3)
    click_record(impression_id=served.items[0].impression_id)
    assert InterleaveCredit.objects.count() == 0
    assert "arm" not in served.as_dict()["items"][0]


def test_each_arm_learns_from_the_impressions_it_contributed(serving_manual):
    experiment = _arena(serving_manual)
    for u in range(6):
        served = recommendation_serve(user_id=f"u{u}", k=8)
        click_record(impression_id=served.items[u % 8].impression_id)
    config = TrainingConfig(batch_rows=10_000, budget_s=60.0)
    for arm in experiment.arms.all():
        training.arm_train(arm_id=arm.id, config=config)
        version = ModelCheckpoint.objects.filter(arm=arm).order_by("-version").first()
        contributed = Impression.objects.filter(arm=arm).count()
        assert contributed == 24
        assert version.metrics["n_impressions"] == contributed


def test_a_weight_zero_candidate_stays_out_of_the_slate(serving_manual):
    _arena(serving_manual, arms=(("a", "popularity", 1.0), ("b", "popularity", 1.0), ("c", "popularity", 0.0)))
    served = recommendation_serve(user_id="shopper", k=9)
    assert {i.arm for i in served.items} == {"a", "b"}


def test_three_arms_are_multileaved(serving_manual):
    _arena(serving_manual, arms=(("a", "popularity", 1.0), ("b", "popularity", 1.0), ("c", "popularity", 1.0)))
    served = recommendation_serve(user_id="shopper", k=9)
    assert Counter(i.arm for i in served.items) == {"a": 3, "b": 3, "c": 3}
    assert served.arm == "a+b+c"


def test_a_promoted_interleaved_experiment_serves_the_winner_alone(serving_manual):
    experiment = _arena(serving_manual)
    winner = experiment.arms.get(name="b")
    Experiment.objects.filter(pk=experiment.pk).update(status="concluded", winner=winner)
    serving_manual.refresh()
    served = recommendation_serve(user_id="shopper", k=5)
    assert served.arm == "b"
    assert set(Impression.objects.filter(request_id=served.request_id).values_list("arm__name", flat=True)) == {"b"}
