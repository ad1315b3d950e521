"""Each estimator against values worked out by hand on tiny logs."""

import numpy as np
import pytest

from experiments.offline.estimators import (
    LoggedFeedback,
    bootstrap_distribution,
    bootstrap_interval,
    direct_method,
    doubly_robust,
    effective_sample_size,
    estimate,
    estimate_per_slot,
    evaluate,
    expected_reward,
    ips,
    snips,
)

# Four logged rows. Importance weights w = π_e / π_0 = [2, 2, 2, 0].
REWARD = [1.0, 0.0, 1.0, 0.0]
PROPENSITY = [0.5, 0.25, 0.2, 0.5]
TARGET = [1.0, 0.5, 0.4, 0.0]
REWARD_HAT = [0.5, 0.25, 0.5, 0.1]
TARGET_REWARD_HAT = [0.6, 0.3, 0.4, 0.2]


def tiny(slot=None) -> LoggedFeedback:
    return LoggedFeedback(
        reward=REWARD,
        propensity=PROPENSITY,
        target_probability=TARGET,
        reward_hat=REWARD_HAT,
        target_reward_hat=TARGET_REWARD_HAT,
        slot=slot,
    )


def test_ips_is_the_mean_of_weighted_rewards():
    # (2·1 + 2·0 + 2·1 + 0·0) / 4
    assert ips(tiny()) == pytest.approx(1.0)


def test_snips_divides_by_the_sum_of_weights():
    # (2 + 0 + 2 + 0) / (2 + 2 + 2 + 0)
    assert snips(tiny()) == pytest.approx(4 / 6)


def test_direct_method_is_the_mean_of_the_target_reward_model():
    # (0.6 + 0.3 + 0.4 + 0.2) / 4
    assert direct_method(tiny()) == pytest.approx(0.375)


def test_doubly_robust_adds_the_weighted_residuals():
    # rows: 0.6 + 2·0.5 | 0.3 + 2·(−0.25) | 0.4 + 2·0.5 | 0.2 + 0·(−0.1)
    assert doubly_robust(tiny()) == pytest.approx((1.6 - 0.2 + 1.4 + 0.2) / 4)


def test_doubly_robust_equals_ips_when_the_reward_model_is_zero():
    zero = LoggedFeedback(
        reward=REWARD,
        propensity=PROPENSITY,
        target_probability=TARGET,
        reward_hat=np.zeros(4),
        target_reward_hat=np.zeros(4),
    )
    assert doubly_robust(zero) == pytest.approx(ips(zero))


def test_snips_normalises_within_each_slot():
    # slot 0: (2 + 0) / (2 + 2) = 0.5; slot 1: (2 + 0) / (2 + 0) = 1; each holds half the rows.
    assert snips(tiny(slot=[0, 0, 1, 1])) == pytest.approx(0.5 * 0.5 + 0.5 * 1.0)


def test_ips_with_slots_equals_the_pooled_mean():
    assert ips(tiny(slot=[0, 0, 1, 1])) == pytest.approx(ips(tiny()))


def test_per_slot_values():
    # slot 0 rows: w·r = [2, 0] → IPS 1; DR terms [1.6, −0.2] → 0.7.
    # slot 1 rows: w·r = [2, 0] → IPS 1; DR terms [1.4, 0.2] → 0.8.
    slotted = tiny(slot=[1, 1, 3, 3])
    assert estimate_per_slot(slotted, "ips") == pytest.approx({1: 1.0, 3: 1.0})
    assert estimate_per_slot(slotted, "dr") == pytest.approx({1: 0.7, 3: 0.8})


def test_unequal_slots_are_weighted_by_their_share_of_rows():
    # slot 0: one row, SNIPS 2/2 = 1; slot 1: three rows, SNIPS (0 + 2 + 0)/(2 + 2 + 0) = 0.5.
    assert snips(tiny(slot=[0, 1, 1, 1])) == pytest.approx(0.25 * 1.0 + 0.75 * 0.5)


def test_a_slot_whose_weights_are_all_zero_scores_zero_under_snips():
    log = LoggedFeedback(reward=[1.0, 1.0], propensity=[0.5, 0.5], target_probability=[1.0, 0.0], slot=[0, 1])
    assert snips(log) == pytest.approx(0.5 * 1.0 + 0.5 * 0.0)


def test_effective_sample_size():
    # (2 + 2 + 2 + 0)² / (4 + 4 + 4 + 0)
    assert effective_sample_size(tiny()) == pytest.approx(3.0)


def test_expected_reward_sums_policy_times_reward_model():
    pi = np.array([[0.25, 0.75], [1.0, 0.0]])
    q = np.array([[0.4, 0.8], [0.1, 0.9]])
    np.testing.assert_allclose(expected_reward(pi, q), [0.25 * 0.4 + 0.75 * 0.8, 0.1])


def test_bootstrap_of_two_rows_spans_both_extremes():
    # Resampled means of IPS terms [0, 1] are 0, ½, 1 with probabilities ¼, ½, ¼.
    log = LoggedFeedback(reward=[0.0, 1.0], propensity=[1.0, 1.0], target_probability=[1.0, 1.0])
    draws = bootstrap_distribution(log, "ips", n_bootstrap=4000, seed=3)
    assert set(np.unique(draws)) == {0.0, 0.5, 1.0}
    assert np.mean(draws == 0.5) == pytest.approx(0.5, abs=0.03)
    assert bootstrap_interval(log, "ips", n_bootstrap=4000, seed=3) == (0.0, 1.0)


def test_bootstrap_of_a_constant_log_has_zero_width():
    log = LoggedFeedback(reward=[1.0] * 5, propensity=[0.5] * 5, target_probability=[0.25] * 5)
    assert bootstrap_interval(log, "snips", n_bootstrap=50, seed=0) == (1.0, 1.0)


def test_bootstrap_standard_error_matches_the_textbook_one():
    rng = np.random.default_rng(11)
    n = 2000
    log = LoggedFeedback(
        reward=rng.binomial(1, 0.3, n).astype(float),
        propensity=np.full(n, 0.5),
        target_probability=rng.choice([0.25, 0.75], n),
    )
    terms = log.importance_weight * log.reward
    (result,) = evaluate(log, ["ips"], n_bootstrap=1000, seed=5)
    assert result.value == pytest.approx(terms.mean())
    assert result.std_error == pytest.approx(terms.std(ddof=1) / np.sqrt(n), rel=0.1)
    assert result.ci_low < result.value < result.ci_high


def test_bootstrap_is_reproducible_from_its_seed_and_chunking():
    log = tiny(slot=[0, 0, 1, 1])
    first = bootstrap_distribution(log, "dr", n_bootstrap=300, seed=42)
    np.testing.assert_array_equal(first, bootstrap_distribution(log, "dr", n_bootstrap=300, seed=42))
    assert not np.array_equal(first, bootstrap_distribution(log, "dr", n_bootstrap=300, seed=43))


def test_estimate_dispatches_by_name():
    log = tiny()
    assert [estimate(log, name) for name in ("ips", "snips", "dm", "dr")] == [
        ips(log),
        snips(log),
        direct_method(log),
        doubly_robust(log),
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"propensity": [0.0, 0.25, 0.2, 0.5]}, "propensity"),
        ({"propensity": [1.2, 0.25, 0.2, 0.5]}, "propensity"),
        ({"propensity": [-0.1, 0.25, 0.2, 0.5]}, "propensity"),
        ({"target_probability": [1.5, 0.5, 0.4, 0.0]}, "target_probability"),
        ({"target_probability": [-0.5, 0.5, 0.4, 0.0]}, "target_probability"),
        ({"reward": [1.0, 0.0, 1.0]}, "same length"),
        ({"reward_hat": [0.5, 0.25]}, "same length"),
        ({"slot": [0, 1, 2]}, "same length"),
        ({"slot": [0, 0.5, 1, 1]}, "integers"),
        ({"reward": [[1.0, 0.0], [1.0, 0.0]]}, "1-D"),
        ({"reward": [np.nan, 0.0, 1.0, 0.0]}, "NaN"),
        (
            {"reward": [], "propensity": [], "target_probability": [], "reward_hat": None, "target_reward_hat": None},
            "empty",
        ),
    ],
)
def test_invalid_logs_are_rejected(change, message):
    fields = {
        "reward": REWARD,
        "propensity": PROPENSITY,
        "target_probability": TARGET,
        "reward_hat": REWARD_HAT,
        "target_reward_hat": TARGET_REWARD_HAT,
    }
    with pytest.raises(ValueError, match=message):
        LoggedFeedback(**{**fields, **change})


@pytest.mark.parametrize(
    ("estimator", "message"), [("dm", "target_reward_hat"), ("dr", "reward_hat"), ("ipw", "unknown")]
)
def test_estimators_say_what_they_miss(estimator, message):
    bare = LoggedFeedback(reward=REWARD, propensity=PROPENSITY, target_probability=TARGET)
    with pytest.raises(ValueError, match=message):
        estimate(bare, estimator)


@pytest.mark.parametrize(("kwargs", "message"), [({"n_bootstrap": 1}, "n_bootstrap"), ({"level": 1.0}, "level")])
def test_bootstrap_arguments_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        bootstrap_interval(tiny(), "ips", **kwargs)


def test_expected_reward_rejects_a_policy_that_does_not_sum_to_one():
    with pytest.raises(ValueError, match="probability distribution"):
        expected_reward(np.array([[0.5, 0.4]]), np.array([[0.1, 0.2]]))
