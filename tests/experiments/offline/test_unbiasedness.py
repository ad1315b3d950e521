"""IPS and DR are unbiased on simulated logs whose target-policy value is known exactly.

100 seeded replications of a 2-slot log over 5 contexts and 4 actions, logged by one
softmax policy and evaluated for another. The reward model given to DR and DM is
deliberately wrong; DR must not care, DM must show its bias (so the check has teeth).
"""

import numpy as np
import pytest

from experiments.offline.estimators import LoggedFeedback, estimate, evaluate

N_CONTEXTS, N_ACTIONS, N_SLOTS = 5, 4, 2
N_ROWS, N_REPLICATIONS, N_BOOTSTRAP = 2000, 100, 300


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


WORLD = np.random.default_rng(2024)
CONTEXT_P = softmax(WORLD.normal(size=N_CONTEXTS))
SLOT_P = np.array([0.6, 0.4])
BEHAVIOUR = softmax(WORLD.normal(size=(N_CONTEXTS, N_SLOTS, N_ACTIONS)))
TARGET = softmax(2.0 * WORLD.normal(size=(N_CONTEXTS, N_SLOTS, N_ACTIONS)))
CLICK_P = WORLD.uniform(0.05, 0.5, size=(N_CONTEXTS, 1, N_ACTIONS)) * np.array([1.0, 0.6])[None, :, None]
WRONG_MODEL = 0.5 * CLICK_P + 0.1
TRUE_VALUE = float(np.einsum("x,k,xka,xka->", CONTEXT_P, SLOT_P, TARGET, CLICK_P))


def simulate(seed: int) -> LoggedFeedback:
    rng = np.random.default_rng(seed)
    x = rng.choice(N_CONTEXTS, size=N_ROWS, p=CONTEXT_P)
    k = rng.choice(N_SLOTS, size=N_ROWS, p=SLOT_P)
    cumulative = BEHAVIOUR[x, k].cumsum(axis=1)
    a = np.minimum((rng.random(N_ROWS)[:, None] > cumulative).sum(axis=1), N_ACTIONS - 1)
    reward = (rng.random(N_ROWS) < CLICK_P[x, k, a]).astype(float)
    return LoggedFeedback(
        reward=reward,
        propensity=BEHAVIOUR[x, k, a],
        target_probability=TARGET[x, k, a],
        reward_hat=WRONG_MODEL[x, k, a],
        target_reward_hat=(TARGET[x, k] * WRONG_MODEL[x, k]).sum(axis=1),
        slot=k,
    )


@pytest.fixture(scope="module")
def replications():
    return [
        evaluate(simulate(seed), ["ips", "dr"], n_bootstrap=N_BOOTSTRAP, seed=seed) for seed in range(N_REPLICATIONS)
    ]


@pytest.mark.parametrize("column", [0, 1], ids=["ips", "dr"])
def test_mean_estimate_is_within_three_standard_errors_of_the_truth(replications, column):
    values = np.array([results[column].value for results in replications])
    assert abs(values.mean() - TRUE_VALUE) < 3 * values.std(ddof=1) / np.sqrt(N_REPLICATIONS)


@pytest.mark.parametrize("column", [0, 1], ids=["ips", "dr"])
def test_intervals_cover_the_truth_near_their_nominal_rate(replications, column):
    coverage = np.mean([results[column].covers(TRUE_VALUE) for results in replications])
    assert coverage >= 0.88


@pytest.mark.parametrize("column", [0, 1], ids=["ips", "dr"])
def test_intervals_are_as_wide_as_the_spread_of_the_estimates(replications, column):
    values = np.array([results[column].value for results in replications])
    widths = np.array([results[column].ci_high - results[column].ci_low for results in replications])
    assert widths.mean() == pytest.approx(2 * 1.959964 * values.std(ddof=1), rel=0.25)


def test_the_direct_method_is_biased_under_the_wrong_reward_model():
    values = np.array([estimate(simulate(seed), "dm") for seed in range(N_REPLICATIONS)])
    assert abs(values.mean() - TRUE_VALUE) > 10 * values.std(ddof=1) / np.sqrt(N_REPLICATIONS)
