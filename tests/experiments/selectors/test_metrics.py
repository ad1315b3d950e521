"""The live metrics: conversion rate and revenue per user folded from the outcome rollup, and live CUPED from the
recorded covariates, equal the pure computation on the same per-user rows; the stats JSON lists them."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.db.models import F

from experiments.business_models import ArmEpochCupedSums, ArmEpochOutcomeSums, ArmUserOutcome, UserCovariate
from experiments.models import Arm, ArmUserStat, ShopUser
from experiments.selectors import results as result_selectors
from experiments.selectors.exports import experiment_user_rows
from experiments.services import stats_tick as tick_services
from experiments.stats.cuped import CupedSums, cuped_section
from experiments.stats.metrics import metric_section
from experiments.stats.summaries import RatioSummary
from tests.experiments.selectors.test_exports import T0, shown, stat, world  # noqa: F401  (fixture)
from tests.experiments.stats_support import add_rollup, make_experiment

pytestmark = pytest.mark.django_db


def _fold(arm_ids):
    with transaction.atomic():
        return tick_services.rollup_fold(arm_ids=arm_ids)


def _metric(payload, name):
    return next(m for m in payload["metrics"] if m["name"] == name)


def _rows(section):
    return {r["arm"]: r for r in section["arms"]}


def test_live_cuped_equals_the_pure_computation_on_the_exported_rows(world):  # noqa: F811
    experiment, control, treat = world
    elsewhere = Arm.objects.get(experiment__slug="other")
    fay = ShopUser.objects.create(external_id="fay")  # history without clicks, then clicks here
    shown(user=fay, arm=elsewhere, at=T0 - timedelta(hours=5))
    shown(user=fay, arm=elsewhere, at=T0 - timedelta(hours=4))
    shown(user=fay, arm=control, at=T0)
    stat(user=fay, arm=control, n=3, c=2)
    payload = tick_services.stats_tick(experiment_id=experiment.id)["stats"]

    rows = experiment_user_rows(experiment=experiment)
    by_arm = {}
    for arm in ("control", "treat"):
        mine = [r for r in rows if r["arm"] == arm]
        by_arm[arm] = CupedSums.of_users([r["impressions"] for r in mine], [r["clicks"] for r in mine],
                                         [r["pre_impressions"] for r in mine], [r["pre_clicks"] for r in mine])
    expected = cuped_section(by_arm, control="control")
    live = {name: row["cuped"] for name, row in _rows(_metric(payload, "ctr")).items()}
    assert live["control"] == pytest.approx(expected["control"])
    assert live["treat"] == pytest.approx(expected["treat"])
    assert live["treat"]["theta"] != 0  # ann's and cat's history moved the estimates
    recorded = dict(UserCovariate.objects.filter(experiment=experiment).values_list("user__external_id",
                                                                                   "pre_impressions"))
    assert recorded == {"ann": 3, "bob": 0, "cat": 1, "dan": 0, "fay": 2}


def test_cuped_sums_stay_exact_when_rows_grow_between_ticks(world):  # noqa: F811
    experiment, control, treat = world
    tick_services.stats_tick(experiment_id=experiment.id)
    ArmUserStat.objects.filter(arm=treat, user__external_id="cat").update(impressions=7, clicks=3)
    payload = tick_services.stats_tick(experiment_id=experiment.id)["stats"]

    mine = [r for r in experiment_user_rows(experiment=experiment) if r["arm"] == "treat"]
    sums = CupedSums.of_users([r["impressions"] for r in mine], [r["clicks"] for r in mine],
                              [r["pre_impressions"] for r in mine], [r["pre_clicks"] for r in mine])
    stored = ArmEpochCupedSums.objects.filter(arm=treat)
    assert sum(s.sum_cn0 for s in stored) == sums.sum_cn0 and sum(s.sum_nn0 for s in stored) == sums.sum_nn0
    assert _rows(_metric(payload, "ctr"))["treat"]["cuped"]["unadjusted"] == pytest.approx(sums.sum_c / sums.sum_n)


def test_without_pre_exposure_history_the_adjusted_ctr_is_the_ctr():
    experiment, (control, treat) = make_experiment(slug="fresh")
    add_rollup(arm=control, impressions=[2, 4, 2, 5], clicks=[1, 1, 0, 2])
    add_rollup(arm=treat, impressions=[3, 1, 6], clicks=[1, 0, 3])
    payload = tick_services.stats_tick(experiment_id=experiment.id)["stats"]

    for row in _metric(payload, "ctr")["arms"]:
        assert row["cuped"]["value"] == pytest.approx(row["value"])
        assert (row["cuped"]["ci_low"], row["cuped"]["ci_high"]) == pytest.approx((row["ci_low"], row["ci_high"]))
        assert row["cuped"]["variance_reduction"] == pytest.approx(0.0)


def test_cuped_is_not_shown_for_users_folded_before_their_covariates_were_kept():
    experiment, (control, treat) = make_experiment(slug="old")
    add_rollup(arm=control, impressions=[2, 4, 2], clicks=[1, 1, 0])
    add_rollup(arm=treat, impressions=[3, 1, 6], clicks=[1, 0, 3])
    _fold([control.id, treat.id])
    ArmEpochCupedSums.objects.filter(arm=treat).delete()  # as after the migration: sums without covariates
    payload = tick_services.stats_tick(experiment_id=experiment.id)["stats"]

    rows = _rows(_metric(payload, "ctr"))
    assert rows["treat"]["cuped"] is None and rows["control"]["cuped"] is not None


def _outcomes(arm, users, purchases_revenue):
    ArmUserOutcome.objects.bulk_create([
        ArmUserOutcome(arm=arm, user=u, epoch=0, purchases=p, revenue=Decimal(r))
        for u, (p, r) in zip(users, purchases_revenue, strict=True) if p
    ])


def test_conversion_and_revenue_per_user_equal_the_pure_computation_and_fold_incrementally():
    experiment, (control, treat) = make_experiment(slug="shop")
    cu = add_rollup(arm=control, impressions=[2, 4, 2, 5], clicks=[1, 1, 0, 2], prefix="c")
    tu = add_rollup(arm=treat, impressions=[3, 1, 6], clicks=[1, 0, 3], prefix="t")
    _outcomes(control, cu, [(1, "10.00"), (0, "0"), (0, "0"), (2, "30.50")])
    _outcomes(treat, tu, [(0, "0"), (1, "20.25"), (0, "0")])
    tick_services.stats_tick(experiment_id=experiment.id)
    ArmUserOutcome.objects.filter(arm=treat).update(purchases=2, revenue=Decimal("45.25"))  # a second purchase
    ArmUserOutcome.objects.create(arm=treat, user=tu[2], epoch=0, purchases=1, revenue=Decimal("5.00"))
    payload = tick_services.stats_tick(experiment_id=experiment.id)["stats"]

    revenue = {"control": [10.0, 0, 0, 30.5], "treat": [0, 45.25, 5.0]}
    rev_expected = metric_section(
        "revenue_per_user",
        {a: RatioSummary.from_users([1] * len(v), v) for a, v in revenue.items()}, control="control",
        events={"control": 2, "treat": 2}, seed=experiment.id)
    conv_expected = metric_section(
        "conversion_rate", {"control": RatioSummary.from_users([1] * 4, [1, 0, 0, 1]),
                            "treat": RatioSummary.from_users([1] * 3, [0, 1, 1])}, control="control",
        events={"control": 2, "treat": 2}, seed=experiment.id)
    for name, expected in (("revenue_per_user", rev_expected), ("conversion_rate", conv_expected)):
        live, want = _rows(_metric(payload, name)), _rows(expected)
        for arm in ("control", "treat"):
            for key in ("value", "ci_low", "ci_high", "lift", "lift_ci_low", "lift_ci_high", "p_value", "p_best"):
                assert live[arm][key] == pytest.approx(want[arm][key]), (name, arm, key)
    stored = ArmEpochOutcomeSums.objects.get(arm=treat)
    assert (stored.purchasers, stored.purchases, stored.revenue) == (2, 3, Decimal("50.25"))
    assert stored.revenue_sq == Decimal("45.25") ** 2 + 25
    assert not ArmUserOutcome.objects.exclude(purchases=F("folded_purchases")).exists()


def test_the_stats_json_lists_every_metric_primary_first():
    experiment, (control, treat) = make_experiment(slug="json")
    add_rollup(arm=control, impressions=[2, 4, 2], clicks=[1, 1, 0])
    add_rollup(arm=treat, impressions=[3, 1, 6], clicks=[1, 0, 3])
    experiment.primary_metric = "revenue_per_user"
    experiment.save(update_fields=["primary_metric"])
    payload = tick_services.stats_tick(experiment_id=experiment.id)["stats"]

    out = result_selectors.results(payload)

    assert [m["name"] for m in out["metrics"]] == ["revenue_per_user", "ctr", "conversion_rate"]
    assert [m["primary"] for m in out["metrics"]] == [True, False, False]
    assert out["primary_metric"] == "revenue_per_user"
    for metric in out["metrics"]:
        assert [a["arm"] for a in metric["arms"]] == ["control", "treat"]
        for arm in metric["arms"]:
            assert {"arm", "value", "ci_low", "ci_high", "lift", "always_valid_p"} <= set(arm)
    ctr = _rows(out["metrics"][1])
    assert ctr["treat"]["value"] == payload["report"]["arms"]["treat"]["ctr"]
    assert ctr["treat"]["always_valid_p"] == payload["report"]["arms"]["treat"]["always_valid_p"]
    assert set(ctr["treat"]["cuped"]) >= {"value", "ci_low", "ci_high", "variance_reduction"}
