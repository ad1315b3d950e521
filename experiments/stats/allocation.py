"""Feedback control: traffic shares that follow the evidence (Thompson sampling, top-two Thompson), with a floor.

Pure NumPy over the same posterior as P(best) (``bayes.posterior_draws``: each
arm's CTR ~ N(standardised CTR, clustered variance)), broadcasting over leading
axes so that a simulation can steer thousands of experiments at once through
this very code (tests/experiments/stats/test_allocation.py).

* **thompson** — probability matching: each arm's share of new users is its
  posterior probability of being the best (Thompson 1933; as a batch policy,
  "randomized probability matching", Scott 2010).
* **top_two_thompson** — with probability β the posterior's best, otherwise
  the best of a re-draw in which it is not best (Russo 2020). Its shares in
  terms of P(best) α: ψ_i = β·α_i + (1 − β)·α_i·Σ_{j≠i} α_j / (1 − α_j). It
  keeps sampling the runner-up, so it identifies the best arm faster than
  Thompson, which starves it.
* **floor** — every arm keeps at least ``floor`` of the new users:
  share = floor + (1 − k·floor)·ψ. The floor keeps every arm in every
  allocation period, so the period-stratified comparison always has data,
  and bounds how far an early unlucky streak can starve an arm.
* **burn-in** — until every arm has the data the sequential test asks for
  (``sequential.enough_data``), the shares stay where they are: a posterior
  from a handful of users is mostly noise.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from experiments.stats.bayes import p_best_of, posterior_draws

POLICIES = ("thompson", "top_two_thompson")
DEFAULT_DRAWS = 4_000
TOP_TWO_BETA = 0.5
# A re-evaluation changes the split only when some arm's share moves by at least this much.
MIN_CHANGE = 0.01


def top_two_shares(p_best: ArrayLike, *, beta: float = TOP_TWO_BETA, draws: int = DEFAULT_DRAWS) -> NDArray[np.float64]:
    """Top-two Thompson's allocation from P(best) (last axis = arms); sums to 1.

    A Monte Carlo P(best) of exactly 0 or 1 would leave the challenger undefined, so
    each probability is kept at least half a draw away from 0 and 1.
    """
    if not 0 < beta < 1:
        raise ValueError(f"beta must be in (0, 1), got {beta!r}")
    a = np.asarray(p_best, dtype=float)
    eps = 0.5 / draws
    a = np.clip(a, eps, 1 - eps)
    a = a / a.sum(axis=-1, keepdims=True)
    odds = a / (1 - a)
    challenger = a * (odds.sum(axis=-1, keepdims=True) - odds)
    psi = beta * a + (1 - beta) * challenger
    return psi / psi.sum(axis=-1, keepdims=True)


def floored(shares: ArrayLike, *, floor: float) -> NDArray[np.float64]:
    """``floor + (1 − k·floor)·shares``; with k·floor ≥ 1 every arm gets 1/k."""
    s = np.asarray(shares, dtype=float)
    k = s.shape[-1]
    if not 0 <= floor:
        raise ValueError(f"floor must be >= 0, got {floor!r}")
    f = min(float(floor), 1.0 / k)
    return f + (1.0 - k * f) * s


def allocation_shares(
    means: ArrayLike,
    variances: ArrayLike,
    *,
    policy: str,
    floor: float,
    rng: np.random.Generator,
    draws: int = DEFAULT_DRAWS,
    beta: float = TOP_TWO_BETA,
) -> NDArray[np.float64]:
    """The policy's share of new users per arm (last axis), floored; leading axes batch experiments."""
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    mu, var = np.asarray(means, dtype=float), np.asarray(variances, dtype=float)
    if mu.shape != var.shape or mu.ndim < 1 or mu.shape[-1] < 1:
        raise ValueError("means and variances must have the same shape, arms on the last axis")
    if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(var)) and np.all(var >= 0)):
        raise ValueError("means and variances must be finite, variances >= 0")
    alpha = p_best_of(posterior_draws(mu, var, rng=rng, draws=draws))
    shares = alpha if policy == "thompson" else top_two_shares(alpha, beta=beta, draws=draws)
    return floored(shares, floor=floor)


def largest_change(old: ArrayLike, new: ArrayLike) -> NDArray[np.float64]:
    """max_i |new_i − old_i| over arms (the last axis), both as shares summing to 1."""
    o, n = np.asarray(old, dtype=float), np.asarray(new, dtype=float)
    o = o / o.sum(axis=-1, keepdims=True)
    return np.abs(n - o).max(axis=-1)


def policy_step(
    shares: ArrayLike,
    means: ArrayLike,
    variances: ArrayLike,
    ready: ArrayLike,
    *,
    policy: str,
    floor: float,
    rng: np.random.Generator,
    draws: int = DEFAULT_DRAWS,
    min_change: float = MIN_CHANGE,
) -> NDArray[np.float64]:
    """One re-evaluation: the new shares where the experiment is past burn-in (``ready``) and some share moves
    by at least ``min_change``; the current ``shares`` elsewhere. Leading axes batch experiments."""
    current = np.asarray(shares, dtype=float)
    ok = np.asarray(ready, dtype=bool)
    mu = np.where(ok[..., None], np.asarray(means, dtype=float), 0.0)
    var = np.where(ok[..., None], np.asarray(variances, dtype=float), 0.0)
    new = allocation_shares(mu, var, policy=policy, floor=floor, rng=rng, draws=draws)
    move = ok & (largest_change(current, new) >= min_change)
    return np.where(move[..., None], new, current / current.sum(axis=-1, keepdims=True))
