"""Team-draft interleaving and the per-pair preference statistics, against values worked out by hand."""

import math

import numpy as np
import pytest

from experiments.stats.interleaving import draft, slot_propensities, team_credit, team_draft
from experiments.stats.preference import (
    PairCounts,
    PreferenceState,
    chapelle_delta,
    pair_counts,
    pair_report,
    path_always_valid_p,
    preference_update,
    sign_confidence_sequence,
    sign_log_lambda,
    sign_mixture_p,
    sign_test_p,
    wilson,
)

# ----------------------------------------------------------------------------- team draft


def test_draft_follows_the_round_orders():
    # A = [1,2,3,4], B = [4,3,2,1]. Round 1 B first: B→4, A→1; round 2 A first: A→2, B→3.
    items, teams = draft([[1, 2, 3, 4], [4, 3, 2, 1]], 4, [[1, 0], [0, 1]])
    assert items == [4, 1, 2, 3]
    assert teams == [1, 0, 0, 1]


def test_draft_skips_items_the_other_team_took():
    # A = [1,2,3], B = [1,3,2]; A first: A→1, B→3 (its 1 is taken); round 2 B first: B→2.
    items, teams = draft([[1, 2, 3], [1, 3, 2]], 3, [[0, 1], [1, 0]])
    assert items == [1, 3, 2]
    assert teams == [0, 1, 1]


def test_propensities_two_overlapping_rankings_by_hand():
    # Slot 1 is item 1 whoever goes first. A first → slot 2 is B's 3, then slot 3 is A's 2; B first →
    # slot 2 is A's 2, then 3. Each order has probability 1/2.
    assert slot_propensities([[1, 2, 3], [1, 3, 2]], 3) == [{1: 1.0}, {2: 0.5, 3: 0.5}, {2: 0.5, 3: 0.5}]


def test_propensities_three_arms_by_hand():
    # Multileaving A=[1,2], B=[1,3], C=[1,4]: whoever is first takes 1; each arm is second in 2 of the
    # 6 orders, so slots 2 and 3 hold 2, 3 or 4 with probability 1/3 each.
    out = slot_propensities([[1, 2], [1, 3], [1, 4]], 3)
    assert out[0] == pytest.approx({1: 1.0}, abs=1e-12)
    for slot in out[1:]:
        assert slot == pytest.approx({2: 1 / 3, 3: 1 / 3, 4: 1 / 3}, abs=1e-12)


def test_identical_rankings_show_the_ranking_with_certainty():
    assert slot_propensities([[5, 6, 7], [5, 6, 7]], 3) == [{5: 1.0}, {6: 1.0}, {7: 1.0}]


def test_propensities_sum_to_one_per_slot_and_match_the_frequencies_drawn():
    rankings = [[1, 2, 3, 4, 5, 6], [2, 4, 6, 1, 3, 5]]
    marginals = slot_propensities(rankings, 4)
    for slot in marginals:
        assert sum(slot.values()) == pytest.approx(1.0, abs=1e-12)
    rng = np.random.default_rng(7)
    counts = [dict.fromkeys(m, 0) for m in marginals]
    n = 4000
    for _ in range(n):
        drawn = team_draft(rankings, 4, rng)
        for j, item in enumerate(drawn.items.tolist()):
            counts[j][item] += 1
            assert drawn.propensities[j] == marginals[j][item]
    for m, c in zip(marginals, counts, strict=True):
        for item, p in m.items():
            assert c[item] / n == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / n) + 1e-9)


def test_team_draft_balances_teams_and_caps_k_at_the_pool():
    out = team_draft([[1, 2], [2, 1]], 10, np.random.default_rng(0))
    assert sorted(out.items.tolist()) == [1, 2]
    assert sorted(out.teams.tolist()) == [0, 1]


def test_team_draft_refuses_duplicates_and_bad_k():
    with pytest.raises(ValueError, match="twice"):
        team_draft([[1, 1], [2, 3]], 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="k must be"):
        team_draft([[1], [2]], 0, np.random.default_rng(0))


def test_credit_counts_clicked_slots_per_team():
    np.testing.assert_array_equal(team_credit([0, 1, 1, 0, 2], [True, True, False, True, False], 3), [2, 1, 0])
    with pytest.raises(ValueError, match="out of range"):
        team_credit([0, 3], [True, True], 3)


# ------------------------------------------------------------------------------ preference


def test_pair_counts_from_credits():
    credits = np.array([[2, 1, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1], [0, 0, 0]])
    assert pair_counts(credits, 0, 1) == PairCounts(wins=1, losses=1, ties=1)
    # Against arm 2: arm 0 wins rows 0 and 2, loses row 3; rows 1 and 4 credit neither.
    assert pair_counts(credits, 0, 2) == PairCounts(wins=2, losses=1, ties=0)


def test_sign_test_by_hand():
    assert sign_test_p(PairCounts(10, 0)) == pytest.approx(2 / 1024, abs=1e-12)
    assert sign_test_p(PairCounts(3, 1)) == pytest.approx(10 / 16, abs=1e-12)  # 2·P(X≥3), X~Bin(4,½) = 2·5/16
    assert sign_test_p(PairCounts(0, 0, 5)) == 1.0


def test_mixture_lambda_by_hand():
    # c = 1 (uniform prior): Λ = 2^n · W!·L!/(n+1)!.  W=10, L=0: 1024/11.  W=3, L=1: 16·3!·1!/5! = 0.8.
    assert math.exp(sign_log_lambda(PairCounts(10, 0), 1.0)) == pytest.approx(1024 / 11, rel=1e-12)
    assert sign_mixture_p(PairCounts(10, 0), 1.0) == pytest.approx(11 / 1024, rel=1e-12)
    assert math.exp(sign_log_lambda(PairCounts(3, 1), 1.0)) == pytest.approx(0.8, rel=1e-12)
    assert sign_mixture_p(PairCounts(3, 1), 1.0) == 1.0
    # c = 2: B(2,2) = 1/6, B(4,2) = 1/20; W=2, L=0: Λ = 4 · 6/20 = 1.2.
    assert math.exp(sign_log_lambda(PairCounts(2, 0), 2.0)) == pytest.approx(1.2, rel=1e-12)


def test_confidence_sequence_by_hand():
    # c = 1, W=10, L=0: the lower end solves (1/11)/θ^10 = 1/0.05, θ = (0.05/11)^(1/10) = 0.583120.
    lo, hi = sign_confidence_sequence(PairCounts(10, 0), 0.05, 1.0)
    assert lo == pytest.approx((0.05 / 11) ** 0.1, abs=1e-9)
    assert hi == 1.0
    lo, hi = sign_confidence_sequence(PairCounts(0, 0), 0.05, 1.0)
    assert (lo, hi) == (0.0, 1.0)


def test_confidence_sequence_excludes_half_exactly_when_mixture_p_below_alpha():
    for w, n_l in [(60, 40), (70, 40), (80, 40), (30, 60), (500, 430)]:
        lo, hi = sign_confidence_sequence(PairCounts(w, n_l), 0.05)
        assert (not lo <= 0.5 <= hi) == (sign_mixture_p(PairCounts(w, n_l)) < 0.05)


def test_wilson_and_delta_by_hand():
    # W=8, L=2, z=1.959964: centre (0.8 + 0.192073)/1.384146 = 0.716741, half 0.226579.
    lo, hi = wilson(PairCounts(8, 2))
    assert lo == pytest.approx(0.490162, abs=1e-5)
    assert hi == pytest.approx(0.943318, abs=1e-5)
    assert chapelle_delta(PairCounts(6, 2, 2)) == pytest.approx((6 + 1) / 10 - 0.5)


def test_update_reports_the_current_look_so_a_preference_that_fades_is_no_longer_significant():
    state = preference_update(None, PairCounts(30, 10), concentration=1.0)
    assert state.always_valid_p == pytest.approx(sign_mixture_p(PairCounts(30, 10), 1.0))
    assert state.always_valid_p < 0.05
    assert state.cs_lower > 0.5  # 30 wins of 40: a clear preference for a
    # The arms learnt and the preference faded: 31 wins of 60. A running minimum would still say 0.032 and a
    # running intersection [0.51, 0.71], excluding 1/2: both would still claim a preference the counts no longer show.
    later = preference_update(state, PairCounts(31, 29), concentration=1.0)
    assert later.always_valid_p == pytest.approx(sign_mixture_p(PairCounts(31, 29), 1.0))
    assert later.always_valid_p > 0.05
    assert (later.cs_lower, later.cs_upper) == pytest.approx(sign_confidence_sequence(PairCounts(31, 29), 0.05, 1.0))
    assert later.cs_lower < 31 / 60 < later.cs_upper and later.cs_lower < 0.5
    assert later.looks == 2
    assert preference_update(later, PairCounts(0, 0, 3)) == later
    assert PreferenceState.from_dict(later.to_dict()) == later


def test_path_p_is_the_running_minimum_over_decisive_requests():
    outcomes = np.array([1, 0, 1, 1, -1, 1, 1, 1, 1, 1, 1])
    path = path_always_valid_p(outcomes, 1.0)
    assert path.shape == (10,)  # the tie is skipped
    assert path[-1] == pytest.approx(min(1.0, 1 / math.exp(sign_log_lambda(PairCounts(9, 1), 1.0))))
    assert np.all(np.diff(path) <= 0)


def test_pair_report_is_json_ready():
    figures, state = pair_report(PairCounts(0, 0))
    assert figures["win_rate"] is None and figures["ci_low"] is None
    assert figures["always_valid_p"] == 1.0 and state.looks == 0
    figures, state = pair_report(PairCounts(8, 2, 1))
    assert figures["decisive"] == 10 and figures["sign_p"] == pytest.approx(112 / 1024)  # 2·(1+10+45)/1024
    assert state.looks == 1


def test_counts_validate_themselves():
    with pytest.raises(ValueError):
        PairCounts(-1, 0)
    with pytest.raises(ValueError):
        PairCounts(True, 0)
