import pytest
from scipy import stats as sps

from experiments.stats import holm_adjust, srm_across_periods, srm_test


def test_srm_reference_chi2():
    r = srm_test({"a": 5200, "b": 4800}, {"a": 0.5, "b": 0.5})
    assert r.chi2 == pytest.approx(16.0, abs=1e-9)
    assert r.p_value == pytest.approx(sps.chi2.sf(16.0, 1), abs=1e-9)
    assert r.dof == 1


def test_srm_flags_52_48_at_large_n_and_not_a_fair_split():
    assert srm_test({"a": 52_000, "b": 48_000}, {"a": 1, "b": 1}).alert
    fair = srm_test({"a": 50_100, "b": 49_900}, {"a": 1, "b": 1})
    assert not fair.alert
    assert fair.p_value == pytest.approx(sps.chi2.sf(0.4, 1), abs=1e-4)


def test_srm_uses_unequal_weights():
    assert not srm_test({"a": 9_000, "b": 1_000}, {"a": 0.9, "b": 0.1}).alert
    assert srm_test({"a": 5_000, "b": 5_000}, {"a": 0.9, "b": 0.1}).alert


def test_srm_needs_100_impressions_to_alert():
    tiny = srm_test({"a": 60, "b": 0}, {"a": 1, "b": 1}, impressions=99)
    assert tiny.p_value < 0.001
    assert not tiny.alert


def test_srm_zero_weight_arm_with_traffic_is_a_mismatch():
    r = srm_test({"a": 500, "b": 500, "c": 1}, {"a": 1, "b": 1, "c": 0})
    assert r.p_value == 0.0
    assert r.alert


def test_srm_across_periods_is_bonferroni():
    ok = srm_test({"a": 9_000, "b": 1_000}, {"a": 0.9, "b": 0.1})
    bad = srm_test({"a": 5_200, "b": 4_800}, {"a": 0.5, "b": 0.5})
    p, alert = srm_across_periods([ok, bad])
    assert p == pytest.approx(2 * bad.p_value, abs=1e-12)
    assert alert


def test_holm_reference():
    adj = holm_adjust({"a": 0.01, "b": 0.04, "c": 0.03, "d": None})
    assert adj == {"a": pytest.approx(0.03), "b": pytest.approx(0.06), "c": pytest.approx(0.06), "d": None}


def test_holm_single_test_is_unchanged_and_caps_at_one():
    assert holm_adjust({"a": 0.2}) == {"a": 0.2}
    assert holm_adjust({"a": 0.6, "b": 0.7}) == {"a": 1.0, "b": 1.0}


def test_holm_rejects_out_of_range():
    with pytest.raises(ValueError):
        holm_adjust({"a": 1.2})
