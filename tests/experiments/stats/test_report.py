import json

import numpy as np
import pytest

from experiments.stats import (
    AllocationPeriod,
    ClusteredRatioSummary,
    ctr_estimate,
    difference,
    experiment_report,
    fixed_horizon_p,
    holm_adjust,
    msprt_p,
    msprt_update,
    relative_lift,
)

ARM_KEYS = {
    "arm", "is_control", "weight", "users", "user_share", "impressions", "clicks", "ctr", "ctr_se", "ctr_ci",
    "design_effect", "ctr_adjusted", "ctr_adjusted_ci", "abs_diff", "abs_diff_ci", "lift", "lift_ci", "p_value",
    "p_value_holm", "always_valid_p", "always_valid_p_holm", "lift_cs", "significant", "significant_sequential",
    "p_best", "expected_loss", "periods_used",
}  # fmt: skip
TOP_KEYS = {
    "schema_version", "at", "control", "alpha", "arm_order", "arms", "srm", "srm_threshold", "srm_min_impressions",
    "comparison", "bayes", "sequential_state", "warnings",
}  # fmt: skip


def _arm(rng, users, ctr):
    n = 1 + rng.poisson(4, users)
    return ClusteredRatioSummary.from_users(n, rng.binomial(n, rng.beta(ctr * 19, (1 - ctr) * 19, users)))


@pytest.fixture
def arms():
    rng = np.random.default_rng(8)
    return {"control": _arm(rng, 3000, 0.05), "b": _arm(rng, 3000, 0.06), "c": _arm(rng, 1500, 0.05)}


WEIGHTS = {"control": 0.4, "b": 0.4, "c": 0.2}


def test_report_shape_and_strict_json(arms):
    r = experiment_report(arms, control="control", weights=WEIGHTS, seed=3, at="2026-11-28T13:00:00Z")
    json.dumps(r, allow_nan=False)
    assert set(r) == TOP_KEYS
    assert all(set(row) == ARM_KEYS for row in r["arms"].values())
    assert r["arm_order"] == ["control", "b", "c"]
    assert r["at"] == "2026-11-28T13:00:00Z"
    assert set(r["sequential_state"]["arms"]) == {"b", "c"}


def test_report_numbers_match_the_building_blocks(arms):
    r = experiment_report(arms, control="control", weights=WEIGHTS, seed=3)
    ctl, b = ctr_estimate(arms["control"]), ctr_estimate(arms["b"])
    row = r["arms"]["b"]
    assert row["ctr"] == pytest.approx(b.value, abs=1e-12)
    assert row["ctr_ci"] == pytest.approx(list(b.interval(0.95)), abs=1e-12)
    assert row["abs_diff"] == pytest.approx(b.value - ctl.value, abs=1e-12)
    assert row["lift"] == pytest.approx(relative_lift(b, ctl).value, abs=1e-12)
    assert row["p_value"] == pytest.approx(fixed_horizon_p(difference(b, ctl)), abs=1e-12)
    lift = relative_lift(b, ctl)
    assert row["always_valid_p"] == pytest.approx(
        msprt_update(None, estimate=lift.value, variance=lift.variance).always_valid_p, abs=1e-12
    )
    holm = holm_adjust({"b": row["p_value"], "c": r["arms"]["c"]["p_value"]})
    assert row["p_value_holm"] == pytest.approx(holm["b"], abs=1e-12)
    assert r["arms"]["control"]["lift"] is None
    assert sum(a["p_best"] for a in r["arms"].values()) == pytest.approx(1.0, abs=1e-12)
    assert sum(a["weight"] for a in r["arms"].values()) == pytest.approx(1.0)


def test_report_is_deterministic_given_the_seed(arms):
    first = experiment_report(arms, control="control", weights=WEIGHTS, seed=11)
    assert experiment_report(arms, control="control", weights=WEIGHTS, seed=11) == first


def test_sequential_state_is_carried_between_ticks():
    rng = np.random.default_rng(4)
    state, history = None, []
    totals = {"a": ClusteredRatioSummary.empty(), "b": ClusteredRatioSummary.empty()}
    for _ in range(6):
        totals = {"a": totals["a"] + _arm(rng, 500, 0.05), "b": totals["b"] + _arm(rng, 500, 0.055)}
        r = experiment_report(totals, control="a", weights={"a": 1, "b": 1}, sequential_state=state, draws=100)
        json.loads(json.dumps(r["sequential_state"]))  # storable as-is
        state = r["sequential_state"]
        history.append(r["arms"]["b"]["always_valid_p"])
        # Each tick reports its own look (experiments/stats/sequential.py), consistent with its interval.
        lift = relative_lift(ctr_estimate(totals["b"]), ctr_estimate(totals["a"]))
        assert history[-1] == pytest.approx(float(msprt_p(lift.value, lift.variance, 0.1)), abs=1e-12)
        low, high = r["arms"]["b"]["lift_cs"]
        assert low <= r["arms"]["b"]["lift"] <= high and (low > 0 or high < 0) == (history[-1] < 0.05)
        assert state["arms"]["b"] == {"always_valid_p": history[-1], "cs_lower": low, "cs_upper": high,
                                      "looks": len(history)}
    assert state["arms"]["b"]["looks"] == 6


def test_changing_control_resets_the_sequential_state(arms):
    first = experiment_report(arms, control="control", weights=WEIGHTS, draws=100)
    second = experiment_report(
        arms, control="b", weights=WEIGHTS, sequential_state=first["sequential_state"], draws=100
    )
    assert "sequential_reset" in [w["code"] for w in second["warnings"]]
    assert second["sequential_state"]["arms"]["control"]["looks"] == 1


def test_small_and_empty_arms_do_not_break_the_report():
    rng = np.random.default_rng(0)
    arms = {"a": _arm(rng, 2000, 0.05), "new": ClusteredRatioSummary.empty(), "tiny": _arm(rng, 5, 0.05)}
    r = experiment_report(arms, control="a", weights={"a": 1, "new": 1, "tiny": 1}, draws=100)
    json.dumps(r, allow_nan=False)
    assert r["arms"]["new"]["ctr"] is None
    assert r["arms"]["new"]["p_best"] is None
    assert r["arms"]["tiny"]["always_valid_p"] == 1.0  # the sequential test waits for data
    codes = [(w["code"], w["arm"]) for w in r["warnings"]]
    assert ("few_data", "new") in codes and ("few_data", "tiny") in codes and ("not_ranked", "new") in codes


def test_pair_without_common_period_falls_back_to_pooled_with_a_warning(arms):
    only_control = AllocationPeriod(weights={"control": 1}, arms={"control": arms["control"]})
    only_b = AllocationPeriod(weights={"b": 1, "c": 1}, arms={"b": arms["b"], "c": arms["c"]})
    r = experiment_report(arms, control="control", weights=WEIGHTS, periods=[only_control, only_b], draws=100)
    assert r["arms"]["b"]["periods_used"] == 0
    assert r["arms"]["b"]["lift"] == pytest.approx(
        relative_lift(ctr_estimate(arms["b"]), ctr_estimate(arms["control"])).value, abs=1e-12
    )
    assert ("no_common_period", "b") in [(w["code"], w["arm"]) for w in r["warnings"]]


def _period(rng, spec):
    return AllocationPeriod(
        weights={name: w for name, (w, _) in spec.items()},
        arms={name: _arm(rng, int(4000 * w), ctr) for name, (w, ctr) in spec.items() if w > 0},
    )


def _totals(periods):
    names = dict.fromkeys(n for p in periods for n in p.weights)
    return {n: sum((p.arms[n] for p in periods if n in p.arms), ClusteredRatioSummary.empty()) for n in names}


def test_retired_arm_leaves_p_best_but_keeps_its_comparison():
    rng = np.random.default_rng(21)
    p1 = _period(rng, {"a": (0.4, 0.05), "b": (0.4, 0.055), "old": (0.2, 0.04)})
    p2 = _period(rng, {"a": (0.5, 0.04), "b": (0.5, 0.044), "old": (0.0, 0.0)})
    r = experiment_report(_totals([p1, p2]), control="a", weights=p2.weights, periods=[p1, p2], draws=1000)
    assert r["arms"]["old"]["p_best"] is None
    assert r["arms"]["a"]["p_best"] + r["arms"]["b"]["p_best"] == pytest.approx(1.0)
    assert (r["arms"]["b"]["periods_used"], r["arms"]["old"]["periods_used"]) == (2, 1)
    assert r["comparison"]["ranking_periods_used"] == 2
    assert ("not_ranked", "old") in [(w["code"], w["arm"]) for w in r["warnings"]]


def test_after_promotion_p_best_stays_at_the_last_comparative_state():
    rng = np.random.default_rng(22)
    before = [
        _period(rng, {"a": (0.5, 0.05), "b": (0.5, 0.056)}),
        _period(rng, {"a": (0.2, 0.04), "b": (0.8, 0.045)}),
    ]
    promoted = [*before, _period(rng, {"a": (0.0, 0.0), "b": (1.0, 0.03)})]
    r_before = experiment_report(_totals(before), control="a", weights={"a": 0.2, "b": 0.8}, periods=before)
    r_after = experiment_report(_totals(promoted), control="a", weights={"a": 0, "b": 1}, periods=promoted)
    for key in ("p_best", "expected_loss", "ctr_adjusted", "lift", "p_value"):
        assert r_after["arms"]["b"][key] == pytest.approx(r_before["arms"]["b"][key], abs=1e-12)


def test_report_at_experiment_start_is_valid_and_empty():
    empty = ClusteredRatioSummary.empty()
    r = experiment_report({"a": empty, "b": empty}, control="a", weights={"a": 1, "b": 1})
    json.dumps(r, allow_nan=False)
    assert [r["arms"]["b"][k] for k in ("ctr", "ctr_ci", "lift", "p_value", "always_valid_p", "p_best")] == [
        None,
        None,
        None,
        None,
        1.0,
        None,
    ]
    assert not r["srm"]["alert"]


def test_unknown_control_is_rejected(arms):
    with pytest.raises(ValueError):
        experiment_report(arms, control="nope", weights=WEIGHTS)


def test_negative_weight_is_rejected(arms):
    with pytest.raises(ValueError):
        experiment_report(arms, control="control", weights={"control": -1, "b": 1, "c": 1})
