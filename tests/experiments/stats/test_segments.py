"""Segments: per-segment clustered CTR, lift vs control, Holm across the segment values."""

import pytest

from experiments.stats.frequentist import ctr_estimate
from experiments.stats.multiple import holm_adjust
from experiments.stats.segments import segment_report
from experiments.stats.summaries import ClusteredRatioSummary


def users(*pairs):
    return ClusteredRatioSummary.from_users([n for n, _ in pairs], [c for _, c in pairs])


SUMS = {
    "FR": {"control": users((10, 1), (10, 1), (20, 2)), "treat": users((10, 4), (10, 5), (10, 4))},
    "DE": {"control": users((10, 1), (10, 2)), "treat": users((10, 1), (10, 2))},
    "US": {"control": users((5, 1), (5, 0), (5, 1), (5, 1)), "treat": users((5, 0))},
}


def test_each_segment_has_the_clustered_ctr_and_the_p_values_are_holm_adjusted_per_arm():
    report = segment_report(SUMS, control="control", arms=["control", "treat"], alpha=0.05)

    fr = report["rows"]["FR"]["treat"]
    est = ctr_estimate(SUMS["FR"]["treat"])
    assert fr["ctr"] == pytest.approx(13 / 30) and fr["ctr_ci"][0] == pytest.approx(max(0, est.interval()[0]))
    assert report["segments"] == ["FR", "US", "DE"]  # most users first
    raw = {seg: report["rows"][seg]["treat"]["p_value"] for seg in report["segments"]}
    assert raw["US"] is None  # one user in the segment: no test, and it does not count for Holm
    assert {seg: report["rows"][seg]["treat"]["p_holm"] for seg in raw} == holm_adjust(raw)
    assert report["rows"]["FR"]["treat"]["p_holm"] == pytest.approx(min(1.0, 2 * raw["FR"]))
    assert report["rows"]["FR"]["treat"]["significant"] is (report["rows"]["FR"]["treat"]["p_holm"] < 0.05)
    assert report["tests_per_arm"] == {"treat": 2}
    assert report["rows"]["DE"]["treat"]["lift"] == pytest.approx(0.0)


def test_an_arm_missing_from_a_segment_has_an_empty_cell():
    report = segment_report({"x": {"control": users((10, 1), (10, 2))}}, control="control", arms=["control", "treat"])

    assert report["rows"]["x"]["treat"] == {"users": 0, "impressions": 0, "clicks": 0, "ctr": None, "ctr_ci": None,
                                            "lift": None, "p_value": None, "p_holm": None, "significant": False}
