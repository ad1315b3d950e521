"""Off-policy estimators of a target policy's value from logged bandit feedback.

Pure NumPy; no Django import anywhere in this module.

Every row of the log is one shown item: the logged action ``a_i`` at slot ``k_i``
for context ``x_i``, with its reward ``r_i`` and

* ``propensity``          p_i = π_0(a_i | x_i, k_i), the logging policy's probability
                          of putting that item in that slot (what serving logged);
* ``target_probability``  π_e(a_i | x_i, k_i), the target policy's probability of
                          the same item in the same slot;
* ``reward_hat``          q̂(x_i, a_i, k_i), a reward model's prediction for the
                          logged action (DR only);
* ``target_reward_hat``   Σ_a π_e(a | x_i, k_i) q̂(x_i, a, k_i), the reward model's
                          expected reward under the target policy (DM and DR).

Slates are evaluated slot by slot ("independent" / position-wise, as the Open
Bandit Pipeline does): each row is treated as a bandit round of its own slot, so
the estimated value is the target policy's expected reward per shown item (its
per-impression CTR when rewards are clicks). When ``slot`` is given, each slot is
estimated on its own rows and the slots are combined by their share of rows; for
IPS, DM and DR this equals the pooled mean, for SNIPS it means the importance
weights are normalised within each slot, where they have mean one in expectation.

Confidence intervals are percentile bootstraps over rows, seeded and vectorised.
The reward model is held fixed in the bootstrap (as in OBP's ``estimate_interval``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ESTIMATORS: tuple[str, ...] = ("ips", "snips", "dm", "dr")

# Bootstrap replicates are drawn in chunks so that one chunk's index matrix stays
# around this many elements (≈ 32 MB of int64), whatever the log size.
_BOOTSTRAP_CHUNK_ELEMENTS = 4_000_000


def _as_1d(name: str, values: object, dtype: type = np.float64) -> np.ndarray:
    array = np.asarray(values, dtype=dtype)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


@dataclass(frozen=True)
class LoggedFeedback:
    """Slot-level logged feedback plus the target policy's view of it; validates itself."""

    reward: np.ndarray
    propensity: np.ndarray
    target_probability: np.ndarray
    reward_hat: np.ndarray | None = None
    target_reward_hat: np.ndarray | None = None
    slot: np.ndarray | None = None

    def __post_init__(self) -> None:
        columns = {
            "reward": self.reward,
            "propensity": self.propensity,
            "target_probability": self.target_probability,
            "reward_hat": self.reward_hat,
            "target_reward_hat": self.target_reward_hat,
        }
        for name, values in columns.items():
            if values is not None:
                object.__setattr__(self, name, _as_1d(name, values))
        if self.slot is not None:
            slot = _as_1d("slot", self.slot)
            if not np.all(slot == np.round(slot)):
                raise ValueError("slot must hold integers")
            object.__setattr__(self, "slot", slot.astype(np.int64))

        n = self.reward.shape[0]
        if n == 0:
            raise ValueError("the log is empty")
        lengths = {name: getattr(self, name).shape[0] for name in (*columns, "slot") if getattr(self, name) is not None}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"all arrays must have the same length, got {lengths}")
        if np.any(self.propensity <= 0.0) or np.any(self.propensity > 1.0):
            raise ValueError("propensity must lie in (0, 1]: a logged action had to be possible")
        if np.any(self.target_probability < 0.0) or np.any(self.target_probability > 1.0):
            raise ValueError("target_probability must lie in [0, 1]")

    @property
    def n(self) -> int:
        return int(self.reward.shape[0])

    @property
    def importance_weight(self) -> np.ndarray:
        """w_i = π_e(a_i | x_i, k_i) / π_0(a_i | x_i, k_i)."""
        return self.target_probability / self.propensity


@dataclass(frozen=True)
class PolicyEstimate:
    """One estimator's value with its bootstrap interval."""

    estimator: str
    value: float
    ci_low: float
    ci_high: float
    std_error: float
    n: int
    level: float

    def covers(self, truth: float) -> bool:
        return self.ci_low <= truth <= self.ci_high


def _require(feedback: LoggedFeedback, *names: str, estimator: str) -> None:
    missing = [name for name in names if getattr(feedback, name) is None]
    if missing:
        raise ValueError(f"{estimator} needs {', '.join(missing)}")


def _terms(feedback: LoggedFeedback, estimator: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-row numerator terms and denominator terms (None means one per row)."""
    if estimator == "ips":
        return feedback.importance_weight * feedback.reward, None
    if estimator == "snips":
        weight = feedback.importance_weight
        return weight * feedback.reward, weight
    if estimator == "dm":
        _require(feedback, "target_reward_hat", estimator="dm")
        return feedback.target_reward_hat, None
    if estimator == "dr":
        _require(feedback, "reward_hat", "target_reward_hat", estimator="dr")
        residual = feedback.reward - feedback.reward_hat
        return feedback.target_reward_hat + feedback.importance_weight * residual, None
    raise ValueError(f"unknown estimator {estimator!r}; choose from {', '.join(ESTIMATORS)}")


def _slot_codes(feedback: LoggedFeedback) -> tuple[np.ndarray, np.ndarray]:
    if feedback.slot is None:
        return np.zeros(feedback.n, dtype=np.int64), np.zeros(1, dtype=np.int64)
    labels, codes = np.unique(feedback.slot, return_inverse=True)
    return codes.astype(np.int64), labels


def _combine(numerator: np.ndarray, denominator: np.ndarray, count: np.ndarray, n: int) -> np.ndarray:
    """Σ_k (n_k / n) · U_k / D_k along the last axis; a slot whose weights sum to 0 scores 0."""
    ratio = np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator != 0)
    return (count / n * ratio).sum(axis=-1)


def _slot_sums(
    codes: np.ndarray, n_slots: int, numerator: np.ndarray, denominator: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    count = np.bincount(codes, minlength=n_slots).astype(np.float64)
    u = np.bincount(codes, weights=numerator, minlength=n_slots)
    d = count if denominator is None else np.bincount(codes, weights=denominator, minlength=n_slots)
    return u, d, count


def estimate(feedback: LoggedFeedback, estimator: str) -> float:
    """Point estimate of the target policy's value per shown item."""
    numerator, denominator = _terms(feedback, estimator)
    codes, labels = _slot_codes(feedback)
    u, d, count = _slot_sums(codes, labels.size, numerator, denominator)
    return float(_combine(u, d, count, feedback.n))


def estimate_per_slot(feedback: LoggedFeedback, estimator: str) -> dict[int, float]:
    """The estimator on each slot's rows alone: {slot: value}."""
    numerator, denominator = _terms(feedback, estimator)
    codes, labels = _slot_codes(feedback)
    u, d, _ = _slot_sums(codes, labels.size, numerator, denominator)
    ratio = np.divide(u, d, out=np.zeros_like(u), where=d != 0)
    return {int(label): float(value) for label, value in zip(labels, ratio, strict=True)}


def ips(feedback: LoggedFeedback) -> float:
    """Inverse propensity scoring: mean of w_i r_i."""
    return estimate(feedback, "ips")


def snips(feedback: LoggedFeedback) -> float:
    """Self-normalised IPS: Σ w_i r_i / Σ w_i (per slot when slots are given)."""
    return estimate(feedback, "snips")


def direct_method(feedback: LoggedFeedback) -> float:
    """Direct method: mean of Σ_a π_e(a|x_i) q̂(x_i, a)."""
    return estimate(feedback, "dm")


def doubly_robust(feedback: LoggedFeedback) -> float:
    """Doubly robust: DM plus the importance-weighted residual of the reward model."""
    return estimate(feedback, "dr")


def bootstrap_distribution(
    feedback: LoggedFeedback, estimator: str, *, n_bootstrap: int = 2000, seed: int = 0
) -> np.ndarray:
    """The estimator recomputed on ``n_bootstrap`` row resamples (with replacement)."""
    if n_bootstrap < 2:
        raise ValueError("n_bootstrap must be at least 2")
    numerator, denominator = _terms(feedback, estimator)
    codes, labels = _slot_codes(feedback)
    n, n_slots = feedback.n, labels.size
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_bootstrap, _BOOTSTRAP_CHUNK_ELEMENTS // n))
    values = np.empty(n_bootstrap)
    for start in range(0, n_bootstrap, chunk):
        size = min(chunk, n_bootstrap - start)
        rows = rng.integers(0, n, size=(size, n))
        # One bincount over (replicate, slot) keys sums every replicate's slots at once.
        keys = (codes[rows] + n_slots * np.arange(size)[:, None]).ravel()
        length = size * n_slots
        count = np.bincount(keys, minlength=length).astype(np.float64).reshape(size, n_slots)
        u = np.bincount(keys, weights=numerator[rows].ravel(), minlength=length).reshape(size, n_slots)
        if denominator is None:
            d = count
        else:
            d = np.bincount(keys, weights=denominator[rows].ravel(), minlength=length).reshape(size, n_slots)
        values[start : start + size] = _combine(u, d, count, n)
    return values


def bootstrap_interval(
    feedback: LoggedFeedback,
    estimator: str,
    *,
    n_bootstrap: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the estimator at confidence ``level``."""
    if not 0.0 < level < 1.0:
        raise ValueError("level must lie in (0, 1)")
    values = bootstrap_distribution(feedback, estimator, n_bootstrap=n_bootstrap, seed=seed)
    alpha = 1.0 - level
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def evaluate(
    feedback: LoggedFeedback,
    estimators: Sequence[str] = ESTIMATORS,
    *,
    n_bootstrap: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> list[PolicyEstimate]:
    """Each estimator's point value, percentile interval and bootstrap standard error."""
    if not 0.0 < level < 1.0:
        raise ValueError("level must lie in (0, 1)")
    alpha = 1.0 - level
    results = []
    for offset, estimator in enumerate(estimators):
        value = estimate(feedback, estimator)
        draws = bootstrap_distribution(feedback, estimator, n_bootstrap=n_bootstrap, seed=seed + offset)
        low, high = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
        results.append(
            PolicyEstimate(
                estimator=estimator,
                value=value,
                ci_low=float(low),
                ci_high=float(high),
                std_error=float(draws.std(ddof=1)),
                n=feedback.n,
                level=level,
            )
        )
    return results


def effective_sample_size(feedback: LoggedFeedback) -> float:
    """Kish's effective sample size of the importance weights, (Σw)² / Σw²."""
    weight = feedback.importance_weight
    total_sq = float(np.square(weight).sum())
    return float(weight.sum() ** 2 / total_sq) if total_sq > 0 else 0.0


def expected_reward(action_probability: np.ndarray, reward_hat: np.ndarray) -> np.ndarray:
    """Row-wise Σ_a π(a | x_i) q̂(x_i, a) from (n, n_actions) matrices: DM's ``target_reward_hat``."""
    pi = np.asarray(action_probability, dtype=np.float64)
    q = np.asarray(reward_hat, dtype=np.float64)
    if pi.ndim != 2 or pi.shape != q.shape:
        raise ValueError(
            f"action_probability and reward_hat must be equal (n, n_actions) matrices, got {pi.shape} and {q.shape}"
        )
    if np.any(pi < 0) or not np.allclose(pi.sum(axis=1), 1.0, atol=1e-6):
        raise ValueError("each row of action_probability must be a probability distribution")
    return (pi * q).sum(axis=1)
