import pytest

from experiments.stats import AllocationPeriod, ClusteredRatioSummary, user_update_delta

# Four users: (impressions, clicks) = (1, 0), (2, 1), (3, 1), (4, 2).
TINY = ClusteredRatioSummary(n_users=4, sum_n=10, sum_c=4, sum_nn=30, sum_cc=6, sum_nc=13)


def test_from_users_matches_hand_sums():
    assert ClusteredRatioSummary.from_users([1, 2, 3, 4], [0, 1, 1, 2]) == TINY


def test_dict_round_trip():
    assert ClusteredRatioSummary.from_dict(TINY.to_dict()) == TINY


def test_addition_is_union_of_users():
    left = ClusteredRatioSummary.from_users([1, 2], [0, 1])
    right = ClusteredRatioSummary.from_users([3, 4], [1, 2])
    assert left + right == TINY


def test_incremental_user_updates_rebuild_the_summary():
    # User histories: each event moves one user from (n, c) to (n', c').
    events = [(0, 0, 1, 0), (0, 0, 1, 1), (1, 0, 2, 0), (1, 1, 2, 1), (2, 0, 3, 1), (0, 0, 1, 0), (1, 0, 4, 2)]
    totals = dict.fromkeys(("n_users", "sum_n", "sum_c", "sum_nn", "sum_cc", "sum_nc"), 0)
    for nb, cb, na, ca in events:
        delta = user_update_delta(n_before=nb, c_before=cb, n_after=na, c_after=ca)
        totals = {k: totals[k] + delta[k] for k in totals}
    # Final users: (3, 1), (2, 1), (4, 2)
    assert ClusteredRatioSummary.from_dict(totals) == ClusteredRatioSummary.from_users([3, 2, 4], [1, 1, 2])


@pytest.mark.parametrize(
    "fields",
    [
        {"n_users": -1, "sum_n": 0, "sum_c": 0, "sum_nn": 0, "sum_cc": 0, "sum_nc": 0},
        {"n_users": 2, "sum_n": -3, "sum_c": 0, "sum_nn": 5, "sum_cc": 0, "sum_nc": 0},
        {"n_users": 2, "sum_n": 3, "sum_c": 4, "sum_nn": 5, "sum_cc": 8, "sum_nc": 8},  # clicks > impressions
        {"n_users": 0, "sum_n": 3, "sum_c": 0, "sum_nn": 9, "sum_cc": 0, "sum_nc": 0},  # sums without users
        {"n_users": 2, "sum_n": 4, "sum_c": 2, "sum_nn": 8, "sum_cc": 2, "sum_nc": 9},  # nc > nn
        {"n_users": 2, "sum_n": 4, "sum_c": 2, "sum_nn": 3, "sum_cc": 2, "sum_nc": 2},  # nn < n
        {"n_users": 1, "sum_n": 4, "sum_c": 0, "sum_nn": 10, "sum_cc": 0, "sum_nc": 0},  # (Σn)² > K·Σn²
        {"n_users": 1.5, "sum_n": 4, "sum_c": 0, "sum_nn": 16, "sum_cc": 0, "sum_nc": 0},
        {"n_users": 2, "sum_n": float("nan"), "sum_c": 0, "sum_nn": 8, "sum_cc": 0, "sum_nc": 0},
        {"n_users": 2, "sum_n": "4", "sum_c": 0, "sum_nn": 8, "sum_cc": 0, "sum_nc": 0},
    ],
)
def test_summary_rejects_impossible_sums(fields):
    with pytest.raises(ValueError):
        ClusteredRatioSummary(**fields)


def test_summary_accepts_float_rounding_noise():
    s = ClusteredRatioSummary(n_users=2, sum_n=4.0, sum_c=4.0 + 1e-12, sum_nn=8.0, sum_cc=8.0, sum_nc=8.0)
    assert s.clicks == pytest.approx(4.0)


def test_user_update_delta_rejects_clicks_above_impressions():
    with pytest.raises(ValueError):
        user_update_delta(n_before=1, c_before=0, n_after=1, c_after=2)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"weights": {"a": -0.5, "b": 1.5}, "arms": {}},
        {"weights": {"a": 0.0, "b": 0.0}, "arms": {}},
        {"weights": {"a": 1.0}, "arms": {"a": (1, 2)}},
        {"weights": {"a": 1.0}, "arms": {}, "assigned": {"a": -1}},
    ],
)
def test_period_rejects_bad_input(kwargs):
    with pytest.raises(ValueError):
        AllocationPeriod(**kwargs)
