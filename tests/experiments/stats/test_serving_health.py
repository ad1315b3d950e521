"""Serving guardrail metrics: the latency histogram, its quantiles and bounds, Wilson, and the breach rules,
against hand-computed values (experiments/stats/serving_health.py)."""

import math

import pytest

from experiments.stats.serving_health import (
    LATENCY_BUCKETS,
    ArmHealth,
    Bounds,
    breaches,
    latency_bucket,
    latency_edge,
    latency_quantile,
    latency_quantile_lower,
    wilson_lower,
)


def test_buckets_are_log_spaced_and_hold_their_upper_edge():
    assert latency_edge(0) == 0.25 and latency_edge(1) == pytest.approx(0.275) and latency_edge(2) == pytest.approx(0.3025)
    assert latency_bucket(0.25) == 0 and latency_bucket(0.1) == 0 and latency_bucket(-3.0) == 0
    assert latency_bucket(math.nan) == 0
    assert latency_bucket(0.26) == 1 and latency_bucket(0.275) == 1 and latency_bucket(0.2751) == 2
    assert latency_bucket(latency_edge(40)) == 40 and latency_bucket(latency_edge(40) * 1.0001) == 41
    assert latency_bucket(1e9) == LATENCY_BUCKETS - 1  # 30 s and slower share the last bucket


def test_a_quantile_is_the_upper_edge_of_the_bucket_that_holds_it():
    # 100 requests: rank 95 is the 95th smallest.
    assert latency_quantile({0: 5, 10: 95}, 0.95) == pytest.approx(0.25 * 1.1 ** 10)  # 0.648 ms
    assert latency_quantile({0: 96, 10: 4}, 0.95) == 0.25
    assert latency_quantile({0: 95, 10: 5}, 0.95) == 0.25  # exactly the 95th
    assert latency_quantile({}, 0.95) is None and latency_quantile({4: 0}, 0.5) is None
    assert latency_quantile({3: 1}, 0.5) == pytest.approx(0.25 * 1.1 ** 3)


def test_the_lower_bound_of_p95_is_the_order_statistic_below_it():
    # n = 100: rank floor(95 - 2.3263 * sqrt(100 * 0.95 * 0.05)) = floor(95 - 5.070) = 89, read at the lower edge.
    assert latency_quantile_lower({3: 89, 7: 11}, 0.95) == pytest.approx(0.25 * 1.1 ** 2)  # 0.3025 ms
    assert latency_quantile_lower({3: 88, 7: 12}, 0.95) == pytest.approx(0.25 * 1.1 ** 6)  # 0.4429 ms
    assert latency_quantile_lower({0: 100}, 0.95) == 0.0
    assert latency_quantile_lower({5: 1}, 0.95) == 0.0  # n = 1: rank floor(0.95 - 0.507) = 0, no bound
    assert latency_quantile_lower({}, 0.95) is None


def test_wilson_lower_bound_by_hand():
    # p = 0.1, n = 100, z = 2.3263: (0.1 + z²/200 - z·sqrt(0.0009 + z²/40000)) / (1 + z²/100)
    #   = (0.1270595 - 0.0748526) / 1.0541189 = 0.049527
    assert wilson_lower(10, 100) == pytest.approx(0.049527, abs=2e-6)
    assert wilson_lower(0, 100) == 0.0
    assert wilson_lower(0, 0) == 0.0
    assert wilson_lower(100, 100) == pytest.approx(1 / (1 + 2.3263478740408408 ** 2 / 100))


def health(*, requests=400, errors=0, latency=None, shown=0, distinct=0, active=20) -> ArmHealth:
    return ArmHealth(requests=requests, errors=errors, latency=latency or {0: requests}, shown=shown,
                     distinct_items=distinct, active_items=active)


def test_an_error_rate_breaches_only_when_confidently_above_the_bound():
    bounds = Bounds(error_rate=0.05, min_requests=200)
    assert [b.rule for b in breaches(health(requests=200, errors=30), bounds)] == ["error_rate_above_bound"]
    # 6 % observed, but the 99 % lower bound (~3.1 %) is below 5 %: not yet evidence.
    assert breaches(health(requests=200, errors=12), bounds) == []
    assert breaches(health(requests=199, errors=199), bounds) == []  # too few requests to judge
    assert breaches(health(requests=200, errors=200), Bounds(error_rate=None)) == []  # rule off


def test_latency_breaches_when_the_lower_bound_of_p95_is_above_the_bound():
    slow = {latency_bucket(80.0): 300, latency_bucket(2.0): 100}  # p95 and its lower bound in the 80 ms bucket
    breach, = breaches(health(requests=400, latency=slow), Bounds(latency_p95_ms=50.0))
    assert breach.rule == "latency_p95_above_bound"
    assert 80.0 <= breach.evidence["latency_p95_ms"] < 88.0 and breach.evidence["bound"] == 50.0
    assert breaches(health(requests=400, latency=slow), Bounds(latency_p95_ms=100.0)) == []
    assert breaches(health(requests=400, latency=slow), Bounds()) == []  # off by default


def test_coverage_is_judged_once_the_arm_showed_five_times_the_catalogue():
    bounds = Bounds(min_coverage=0.5)
    breach, = breaches(health(shown=100, distinct=3, active=20), bounds)
    assert breach.rule == "coverage_below_bound" and breach.evidence["coverage"] == pytest.approx(0.15)
    assert breaches(health(shown=99, distinct=3, active=20), bounds) == []  # too young to judge
    assert breaches(health(shown=100, distinct=12, active=20), bounds) == []
    assert health(shown=10, distinct=25, active=20).coverage == 1.0  # HyperLogLog over-count is capped
    assert health(shown=0, distinct=0).coverage is None


def test_the_figures_of_an_arm():
    figures = health(requests=100, errors=10, latency={0: 50, 10: 50}, shown=300, distinct=15).as_dict()
    assert figures["error_rate"] == 0.1 and figures["coverage"] == 0.75
    assert figures["latency_p50_ms"] == 0.25 and figures["latency_p95_ms"] == pytest.approx(0.25 * 1.1 ** 10)
    assert figures["error_rate_lower"] == pytest.approx(0.049527, abs=2e-6)
