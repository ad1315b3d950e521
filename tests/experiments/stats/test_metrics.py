"""Conversion rate and revenue per user (experiments/stats/metrics.py): hand-computed values, the CLT special case
n_u = 1, stratification over periods, the sequential gate, and the live CUPED section (stats/cuped.py)."""

from __future__ import annotations

import math

import pytest

from experiments.stats import experiment_report
from experiments.stats.cuped import CupedSums, cuped_moments, cuped_section
from experiments.stats.metrics import ctr_metric, metric_section, ordered
from experiments.stats.summaries import AllocationPeriod, ClusteredRatioSummary, RatioSummary

# Revenue per user of each user: A's mean 10, s² = (1000 − 4·10²)/3 = 200; B's mean 20/3, s² = (400 − 3·(20/3)²)/2.
REV_A = [0.0, 10.0, 0.0, 30.0]
REV_B = [0.0, 0.0, 20.0]


def _mean(values: list[float]) -> RatioSummary:
    return RatioSummary.per_user_mean(n_users=len(values), total=sum(values), total_sq=sum(v * v for v in values))


def _arm(section: dict, name: str) -> dict:
    return next(r for r in section["arms"] if r["arm"] == name)


def test_per_user_mean_is_the_ratio_with_one_denominator_per_user():
    assert _mean(REV_A) == RatioSummary.from_users([1, 1, 1, 1], REV_A)


def test_revenue_per_user_by_hand():
    s = metric_section("revenue_per_user", {"A": _mean(REV_A), "B": _mean(REV_B)}, control="A",
                       events={"A": 2, "B": 1})
    a, b = _arm(s, "A"), _arm(s, "B")
    assert a["value"] == pytest.approx(10.0)
    assert a["se"] == pytest.approx(math.sqrt(50.0))  # s²/K = 200/4
    assert (a["ci_low"], a["ci_high"]) == pytest.approx((0.0, 10 + 1.959964 * math.sqrt(50)))  # clipped at 0
    assert b["value"] == pytest.approx(20 / 3)
    assert b["se"] ** 2 == pytest.approx(400 / 9)  # (400 − 400/3)/2/3
    # Lift T/C − 1 = −1/3 with Var = Var T/C² + T²·Var C/C⁴ = (400/9)/100 + (400/9)·50/10⁴ = 2/3.
    assert b["lift"] == pytest.approx(-1 / 3)
    assert b["lift_ci_high"] - b["lift"] == pytest.approx(1.959964 * math.sqrt(2 / 3), rel=1e-5)
    assert b["abs_diff"] == pytest.approx(-10 / 3)
    assert a["lift"] is None and a["is_control"]
    assert a["p_best"] + b["p_best"] == pytest.approx(1.0)
    assert a["p_best"] > b["p_best"]


def test_conversion_rate_by_hand():
    # A: 2 of 4 users bought: p = 0.5, s² = (2 − 4·0.25)/3 = 1/3, Var = 1/12. B: 1 of 5: 0.2, s² = 0.2, Var = 0.04.
    conv = metric_section("conversion_rate", {"A": _mean([1, 1, 0, 0]), "B": _mean([1, 0, 0, 0, 0])}, control="A",
                          events={"A": 2, "B": 1})
    a, b = _arm(conv, "A"), _arm(conv, "B")
    assert (a["value"], a["se"] ** 2) == pytest.approx((0.5, 1 / 12))
    assert (b["value"], b["se"] ** 2) == pytest.approx((0.2, 0.04))
    assert a["ci_low"] == 0.0 and a["ci_high"] == 1.0  # clipped to [0, 1]
    assert b["lift"] == pytest.approx(-0.6)
    assert b["lift_ci_high"] - b["lift"] == pytest.approx(1.959964 * math.sqrt(0.04 / 0.25 + 0.04 * (1 / 12) / 0.0625),
                                                          rel=1e-5)


def test_the_ratio_form_reproduces_the_ctr_estimate():
    ctr = ClusteredRatioSummary.from_users([2, 4, 2], [1, 1, 0])
    ratio = RatioSummary.from_users([2, 4, 2], [1, 1, 0])
    other = ClusteredRatioSummary.from_users([3, 1, 5], [1, 0, 2])
    s = metric_section("x", {"A": ratio, "B": RatioSummary.from_users([3, 1, 5], [1, 0, 2])}, control="A",
                       events={"A": 2, "B": 3})
    report = experiment_report({"A": ctr, "B": other}, control="A", weights={"A": 1, "B": 1})
    assert _arm(s, "B")["lift"] == pytest.approx(report["arms"]["B"]["lift"])
    assert _arm(s, "A")["se"] == pytest.approx(report["arms"]["A"]["ctr_se"])
    assert _arm(s, "B")["p_value"] == pytest.approx(report["arms"]["B"]["p_value"])


def test_stratified_over_periods_by_hand():
    # Period 1 (4 users): A [10, 0] mean 5, Var 25; B [0, 20] mean 10, Var 100.
    # Period 2 (5 users): A [0, 0, 30] mean 10, Var 100; B [10, 10] mean 10, Var 0.
    # Weights ∝ users: 4/9, 5/9. A* = 70/9, Var = (16·25 + 25·100)/81; B* = 10, Var = 16·100/81.
    p1 = {"A": _mean([10, 0]), "B": _mean([0, 20])}
    p2 = {"A": _mean([0, 0, 30]), "B": _mean([10, 10])}
    periods = [AllocationPeriod(weights={"A": 1, "B": 1}, arms=p) for p in (p1, p2)]
    totals = {n: p1[n] + p2[n] for n in ("A", "B")}
    s = metric_section("revenue_per_user", totals, control="A", events={"A": 2, "B": 3}, periods=periods)
    b = _arm(s, "B")
    assert s["method"] == "stratified" and b["periods_used"] == 2
    a_star, va, b_star, vb = 70 / 9, 2900 / 81, 10.0, 1600 / 81
    assert b["lift"] == pytest.approx(b_star / a_star - 1)
    var = vb / a_star**2 + b_star**2 * va / a_star**4
    assert b["lift_ci_high"] - b["lift"] == pytest.approx(1.959964 * math.sqrt(var), rel=1e-5)
    assert _arm(s, "A")["value"] == pytest.approx(40 / 5)  # the pooled mean is still shown: 40 over 5 users


def test_the_sequential_test_waits_for_enough_purchasers_then_carries_its_state():
    big_a = RatioSummary.per_user_mean(n_users=20000, total=2000, total_sq=2000)
    big_b = RatioSummary.per_user_mean(n_users=20000, total=2400, total_sq=2400)
    waiting = metric_section("conversion_rate", {"A": big_a, "B": big_b}, control="A", events={"A": 5, "B": 2400})
    assert _arm(waiting, "B")["always_valid_p"] == 1.0
    assert waiting["sequential_state"]["arms"]["B"]["looks"] == 0
    first = metric_section("conversion_rate", {"A": big_a, "B": big_b}, control="A", events={"A": 2000, "B": 2400})
    assert first["sequential_state"]["arms"]["B"]["looks"] == 1
    assert _arm(first, "B")["always_valid_p"] < 0.05
    again = metric_section("conversion_rate", {"A": big_a, "B": big_a}, control="A", events={"A": 2000, "B": 2000},
                           sequential_state=first["sequential_state"])
    # The look of the current data: B no longer differs from A, so nothing is significant any more.
    assert _arm(again, "B")["always_valid_p"] == 1.0 and again["sequential_state"]["arms"]["B"]["looks"] == 2


def test_ctr_metric_reads_the_report_rows():
    arms = {"A": ClusteredRatioSummary.from_users([2, 4, 2], [1, 1, 0]),
            "B": ClusteredRatioSummary.from_users([3, 1, 5], [1, 0, 2])}
    report = experiment_report(arms, control="A", weights={"A": 1, "B": 1})
    m = ctr_metric(report, primary=True)
    assert m["name"] == "ctr" and m["primary"] is True
    b = _arm(m, "B")
    assert (b["value"], b["lift"], b["always_valid_p"]) == (report["arms"]["B"]["ctr"], report["arms"]["B"]["lift"],
                                                           report["arms"]["B"]["always_valid_p"])
    assert (b["ci_low"], b["ci_high"]) == tuple(report["arms"]["B"]["ctr_ci"])


def test_primary_first():
    assert ordered(("ctr", "conversion_rate", "revenue_per_user"), "revenue_per_user") == [
        "revenue_per_user", "ctr", "conversion_rate"]
    with pytest.raises(ValueError):
        ordered(("ctr",), "nope")


A = dict(n=[2, 4, 2], c=[1, 1, 0], n0=[2, 2, 4], c0=[1, 0, 2])
B = dict(n=[3, 1], c=[1, 0], n0=[1, 3], c0=[1, 0])


def test_cuped_section_by_hand():
    # tests/experiments/stats/test_cuped.py: θ = 13/69, A_adj = 0.25 − θ/24, B_adj = 0.25 + θ/12.
    theta = 13 / 69
    out = cuped_section({"A": CupedSums.of_users(**A), "B": CupedSums.of_users(**B)}, control="A")
    m = cuped_moments(*zip(CupedSums.of_users(**A).as_args(), CupedSums.of_users(**B).as_args(), strict=True))
    assert out["A"]["value"] == pytest.approx(0.25 - theta / 24)
    assert out["B"]["value"] == pytest.approx(0.25 + theta / 12)
    assert out["B"]["theta"] == pytest.approx(theta)
    assert out["B"]["variance_reduction"] == pytest.approx(float(m.variance_reduction[1]))
    half = 1.959964 * math.sqrt(float(m.adjusted_variance[1]))
    assert out["B"]["ci_high"] == pytest.approx(0.25 + theta / 12 + half, rel=1e-6)
    assert out["B"]["lift"] == pytest.approx((0.25 + theta / 12) / (0.25 - theta / 24) - 1)
    assert out["A"]["lift"] is None


def test_cuped_section_without_pre_exposure_data_is_the_unadjusted_ctr():
    zero = {k: (v if k in ("n", "c") else [0] * len(v)) for k, v in A.items()}
    out = cuped_section({"A": CupedSums.of_users(**zero), "B": None}, control="A")
    assert out["B"] is None
    assert out["A"]["value"] == pytest.approx(0.25) and out["A"]["unadjusted"] == pytest.approx(0.25)
    assert out["A"]["variance_reduction"] == pytest.approx(0.0)
    assert out["A"]["ci_high"] == pytest.approx(0.25 + 1.959964 * math.sqrt(0.01171875), rel=1e-6)
