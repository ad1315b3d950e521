"""Bayesian P(best) and expected loss by seeded Monte Carlo.

Posterior model: CTR_a ~ N(estimate_a, variance_a), independently per arm,
where the variance is the *clustered* delta-method variance. This is the
large-sample posterior under a flat prior (Bernstein–von Mises). A Beta–Binomial
posterior would be exact for independent impressions, but impressions of one
user are correlated, so Beta(clicks+1, non-clicks+1) is too narrow by the design
effect and overstates P(best); the normal approximation keeps the clustering.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

DEFAULT_DRAWS = 20_000


def posterior_draws(
    means: NDArray[np.float64], variances: NDArray[np.float64], *, rng: np.random.Generator, draws: int
) -> NDArray[np.float64]:
    """Draws of every arm's CTR from its posterior, shaped (..., draws, arms) for means shaped (..., arms).

    Leading dimensions batch independent experiments (simulations run thousands at once).
    """
    mu, var = np.asarray(means, dtype=float), np.asarray(variances, dtype=float)
    noise = rng.standard_normal((*mu.shape[:-1], draws, mu.shape[-1]))
    return mu[..., None, :] + np.sqrt(var)[..., None, :] * noise


def p_best_of(samples: NDArray[np.float64]) -> NDArray[np.float64]:
    """Share of draws in which each arm is the best, from draws shaped (..., draws, arms)."""
    best = np.argmax(samples, axis=-1)
    return (best[..., None] == np.arange(samples.shape[-1])).mean(axis=-2)


def p_best_expected_loss(
    means: Sequence[float],
    variances: Sequence[float],
    *,
    seed: int,
    draws: int = DEFAULT_DRAWS,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """P(arm has the highest CTR) and E[max_b CTR_b − CTR_a] for every arm.

    Deterministic for a given seed (NumPy PCG64 via ``default_rng``). P(best)
    sums to exactly 1: each draw has exactly one arg-max.
    """
    mu = np.asarray(means, dtype=float)
    var = np.asarray(variances, dtype=float)
    if mu.ndim != 1 or mu.shape != var.shape or mu.size == 0:
        raise ValueError("means and variances must be non-empty 1-D sequences of equal length")
    if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(var)) and np.all(var >= 0)):
        raise ValueError("means and variances must be finite, variances >= 0")
    if draws < 1:
        raise ValueError("draws must be >= 1")
    samples = posterior_draws(mu, var, rng=np.random.default_rng(seed), draws=draws)
    best = np.argmax(samples, axis=1)
    p_best = np.bincount(best, minlength=mu.size) / draws
    # E[max − θ_a] = E[max] − E[θ_a]: avoids a second (draws × arms) array.
    top = np.take_along_axis(samples, best[:, None], axis=1).mean()
    loss = np.maximum(top - samples.mean(axis=0), 0.0)
    return p_best, loss
