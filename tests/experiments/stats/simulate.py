"""Vectorised simulator of many A/B experiments with per-user click clusters.

Each experiment is a stream of users; a user arrives with all their
impressions (1 + Poisson), their own click probability drawn from a Beta with
mean ``ctr`` and intra-user correlation ``icc``, and a fair-coin arm. Arrays
are (experiments, users); peeks gather cumulative sums at given impression
counts, so thousands of experiments run in one pass of NumPy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class ArmSums:
    """Cumulative sufficient statistics of one arm, arrays shaped (experiments, peeks)."""

    n_users: NDArray[np.float64]
    sum_n: NDArray[np.float64]
    sum_c: NDArray[np.float64]
    sum_nn: NDArray[np.float64]
    sum_cc: NDArray[np.float64]
    sum_nc: NDArray[np.float64]

    def as_args(self) -> tuple[NDArray[np.float64], ...]:
        return (self.n_users, self.sum_n, self.sum_c, self.sum_nn, self.sum_cc, self.sum_nc)


def simulate_users(
    rng: np.random.Generator,
    *,
    experiments: int,
    users: int,
    ctr: float,
    icc: float,
    extra_impressions: float,
    ctr_b: float | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.bool_]]:
    """Per-user impressions, clicks and arm (True = B), each shaped (experiments, users)."""
    n = 1 + rng.poisson(extra_impressions, size=(experiments, users))
    in_b = rng.random((experiments, users)) < 0.5
    mean = np.where(in_b, ctr if ctr_b is None else ctr_b, ctr)
    concentration = 1.0 / icc - 1.0  # Beta(a, b) with a + b + 1 = 1/icc
    p = rng.beta(mean * concentration, (1.0 - mean) * concentration)
    c = rng.binomial(n, p)
    return n, c, in_b


def peek_indices(n: NDArray[np.int64], every: int, peeks: int) -> NDArray[np.int64]:
    """Index of the user at which each experiment's total impressions first reach k·every."""
    cum = np.cumsum(n, axis=1)
    experiments, users = n.shape
    if cum[:, -1].min() < every * peeks:
        raise ValueError("simulate more users: some experiments never reach the last peek")
    # Offsetting each row by a large constant turns the per-row searches into one.
    big = int(cum[:, -1].max()) + 1
    offsets = np.arange(experiments, dtype=np.int64)[:, None] * big
    targets = every * np.arange(1, peeks + 1, dtype=np.int64)[None, :] + offsets
    flat = np.searchsorted((cum + offsets).ravel(), targets.ravel()).reshape(experiments, peeks)
    return flat - np.arange(experiments)[:, None] * users


def arm_sums_at(n: NDArray[np.int64], c: NDArray[np.int64], mask: NDArray[np.bool_], idx: NDArray[np.int64]) -> ArmSums:
    """Cumulative per-arm sums up to and including user ``idx`` of each experiment."""
    m = mask.astype(np.float64)
    nf, cf = n * m, c * m

    def gather(x: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.take_along_axis(np.cumsum(x, axis=1), idx, axis=1)

    return ArmSums(
        n_users=gather(m),
        sum_n=gather(nf),
        sum_c=gather(cf),
        sum_nn=gather(nf * n),
        sum_cc=gather(cf * c),
        sum_nc=gather(nf * c),
    )


def arm_totals(n: NDArray[np.int64], c: NDArray[np.int64], mask: NDArray[np.bool_]) -> ArmSums:
    """Final per-arm sums (one look), shaped (experiments, 1)."""
    m = mask.astype(np.float64)
    nf, cf = n * m, c * m

    def total(x: NDArray[np.float64]) -> NDArray[np.float64]:
        return x.sum(axis=1, keepdims=True)

    return ArmSums(total(m), total(nf), total(cf), total(nf * n), total(cf * c), total(nf * c))
