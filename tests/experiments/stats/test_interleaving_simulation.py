"""Sensitivity of interleaving against an A/B split, by simulation in the synthetic world (issue 17).

The exact design sizes of experiments/simulation/interleaving.py are checked against Monte Carlo, and
the A/A interleave is peeked at after every request. bench/bench_interleaving.py runs the same at a larger
scale and writes docs/benchmarks.md.
"""

import numpy as np
import pytest

from experiments.simulation.interleaving import (
    HETEROGENEOUS,
    ab_requests_per_arm,
    interleaving_outcome_probs,
    interleaving_requests,
    interleaving_requests_clustered,
    peeking_false_positive,
    ranker_pair,
    sequential_stop,
    sign_power,
    simulate_ab,
    simulate_interleaving,
)


@pytest.fixture(scope="module")
def plain():
    return ranker_pair(seed=0, n_users=100)


@pytest.fixture(scope="module")
def mixed():
    return ranker_pair(seed=0, n_users=100, **HETEROGENEOUS)


def test_the_rankers_true_ctrs_differ_by_five_percent(plain, mixed):
    for pair in (plain, mixed):
        assert pair.ctr_a / pair.ctr_b == pytest.approx(1.05, abs=1e-3)
        assert pair.sigma_b > pair.sigma_a


def test_exact_outcome_probabilities_match_the_simulation(mixed):
    p_win, p_loss = interleaving_outcome_probs(mixed)
    outcomes = simulate_interleaving(mixed, 20_000, 5, np.random.default_rng(1))
    n = outcomes.size
    assert (outcomes > 0).mean() == pytest.approx(p_win, abs=4 * np.sqrt(p_win * (1 - p_win) / n))
    assert (outcomes < 0).mean() == pytest.approx(p_loss, abs=4 * np.sqrt(p_loss * (1 - p_loss) / n))
    assert p_win > p_loss


def test_interleaving_reaches_95_percent_power_at_the_computed_size(mixed):
    n = int(np.ceil(interleaving_requests(*interleaving_outcome_probs(mixed))))
    power = sign_power(simulate_interleaving(mixed, n, 300, np.random.default_rng(2)))
    assert power == pytest.approx(0.95, abs=0.04)  # 300 replicates: sd 0.0126


def test_ab_reaches_95_percent_power_at_the_computed_size(mixed):
    n, _, _ = ab_requests_per_arm(mixed)
    power = simulate_ab(mixed, int(np.ceil(n)), 200, np.random.default_rng(3))
    assert power == pytest.approx(0.95, abs=0.05)


def test_interleaving_needs_far_fewer_impressions_where_requests_differ(plain, mixed):
    ratios = {}
    for name, pair in (("plain", plain), ("mixed", mixed)):
        n_ab, _, _ = ab_requests_per_arm(pair)
        ratios[name] = interleaving_requests(*interleaving_outcome_probs(pair)) / (2 * n_ab)
    # The gain is the over-dispersion of clicks per request: in the plain world (every request alike, one
    # Bernoulli per slot) interleaving saves nothing much; with glances, engaged sessions and active users it
    # needs a sixth to a tenth. docs/benchmarks.md has the figures at scale: the 1/10 is missed there.
    assert 0.5 < ratios["plain"] < 1.5
    assert ratios["mixed"] < 0.2
    assert ratios["mixed"] < ratios["plain"] / 5


def test_per_user_split_sizes_reach_95_percent_power(mixed):
    # The product's A/B is a sticky per-user split: each user brings R = 10 requests to one arm.
    n_ab, _, _ = ab_requests_per_arm(mixed, requests_per_user=10)
    assert simulate_ab(mixed, int(np.ceil(n_ab)), 100, np.random.default_rng(7), requests_per_user=10) == \
        pytest.approx(0.95, abs=0.06)
    n_il = interleaving_requests_clustered(mixed, requests_per_user=10)
    outcomes = simulate_interleaving(mixed, int(np.ceil(n_il)), 300, np.random.default_rng(8), requests_per_user=10)
    assert sign_power(outcomes) == pytest.approx(0.95, abs=0.04)
    # R = 1 is the per-request design again (up to the conditional vs unconditional normal approximation).
    assert interleaving_requests_clustered(mixed, requests_per_user=1) == pytest.approx(
        interleaving_requests(*interleaving_outcome_probs(mixed)), rel=0.01)
    assert ab_requests_per_arm(mixed, requests_per_user=1)[0] < n_ab
    assert n_il / (2 * n_ab) < 0.1  # against the product's split, interleaving needs under a tenth here


def test_aa_interleave_peeked_after_every_request_stays_below_five_percent():
    pair = ranker_pair(seed=4, n_users=100, identical=True, **HETEROGENEOUS)
    p_win, p_loss = interleaving_outcome_probs(pair)
    assert p_win == pytest.approx(p_loss, abs=1e-12)
    # 2000 interleaves of 3000 requests (~1300 decisive each): the rate is ~0.036 ± 0.004 here (Ville's bound
    # is 0.05 at any horizon); 400 replicates would leave a ±0.01 noise too close to the bound to be a test.
    outcomes = simulate_interleaving(pair, 3000, 2000, np.random.default_rng(5))
    valid, naive = peeking_false_positive(outcomes)
    assert valid <= 0.05
    assert naive > valid  # reading the fixed-horizon sign test repeatedly does inflate it


def test_sequential_test_stops_early_in_favour_of_the_better_ranker(mixed):
    n = int(np.ceil(interleaving_requests(*interleaving_outcome_probs(mixed))))
    stops = sequential_stop(simulate_interleaving(mixed, 4 * n, 100, np.random.default_rng(6)))
    assert np.isfinite(stops).mean() >= 0.9
    assert np.median(stops[np.isfinite(stops)]) < 4 * n
