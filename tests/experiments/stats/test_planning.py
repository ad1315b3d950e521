"""The planning calculator: sample size from the measured clustered variance, progress, and the expected finish."""

import math

import pytest
from scipy import stats as sps

from experiments.stats.planning import experiment_plan

ARMS = {
    "control": {"impressions": 20_000, "users": 2_000, "ctr": 0.05, "design_effect": 2.0, "weight": 1.0},
    "treat": {"impressions": 10_000, "users": 1_000, "ctr": 0.055, "design_effect": 1.5, "weight": 1.0},
    "cand": {"impressions": 0, "users": 0, "ctr": None, "design_effect": None, "weight": 0.0},
}


def test_impressions_and_users_per_arm_match_the_formula_with_the_measured_design_effect():
    plan = experiment_plan(arms=ARMS, control="control", mde=0.1, alpha=0.05, power=0.8,
                           rates={"control": 2.0, "treat": 1.0})

    p0, p1 = 0.05, 0.055
    z = sps.norm.ppf(0.975) + sps.norm.ppf(0.8)
    expected = math.ceil(z * z * 2.0 * (p0 * (1 - p0) + p1 * (1 - p1)) / (p1 - p0) ** 2)
    assert plan["impressions_per_arm"] == expected == 62_462
    assert plan["users_per_arm"] == math.ceil(expected / 10)  # the control's 10 impressions per user
    assert [r["arm"] for r in plan["arms"]] == ["control", "treat"]  # the weight-0 candidate is not waited for
    assert plan["progress"] == pytest.approx(10_000 / expected)
    assert plan["seconds_left"] == pytest.approx((expected - 10_000) / 1.0)  # the slower arm decides


def test_alpha_is_split_over_the_challengers_and_a_stalled_arm_has_no_finish():
    arms = {**ARMS, "cand": {**ARMS["cand"], "weight": 1.0}}

    plan = experiment_plan(arms=arms, control="control", mde=0.1, alpha=0.05, power=0.8,
                           rates={"control": 2.0, "treat": 1.0, "cand": 0.0})

    assert (plan["comparisons"], plan["alpha_per_comparison"]) == (2, 0.025)
    assert plan["impressions_per_arm"] > 62_462
    assert plan["seconds_left"] is None and plan["progress"] == 0.0


def test_a_reached_size_says_so():
    plan = experiment_plan(arms=ARMS, control="control", mde=2.0, alpha=0.05, power=0.8,
                           rates={"control": 2.0, "treat": 1.0})

    assert plan["progress"] == 1.0 and plan["seconds_left"] == 0.0


@pytest.mark.parametrize("kwargs, message", [
    ({"mde": 0}, "minimum detectable effect"), ({"alpha": 0.7}, "α"), ({"power": 0.2}, "power"),
])
def test_bad_inputs_are_named(kwargs, message):
    args = {"mde": 0.1, "alpha": 0.05, "power": 0.8, **kwargs}
    with pytest.raises(ValueError, match=message):
        experiment_plan(arms=ARMS, control="control", rates={}, **args)


def test_no_baseline_yet_is_explained():
    with pytest.raises(ValueError, match="control has no clicks yet"):
        experiment_plan(arms={"control": {"impressions": 0, "users": 0, "ctr": None, "weight": 1}}, control="control",
                        mde=0.1, alpha=0.05, power=0.8, rates={})
