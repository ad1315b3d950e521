"""Vectorised simulators of many A/B experiments with per-user click clusters (fixed splits, and splits steered by
an allocation policy: :func:`steer`).

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


@dataclass(frozen=True)
class Steered:
    """The end of many adaptive experiments run by :func:`steer` (arrays over experiments, arms last)."""

    always_valid_p: NDArray[np.float64]  # each arm 1… vs arm 0 (the control), carried through every tick
    regret: NDArray[np.float64]  # expected clicks lost to not always showing the best arm
    ctr: NDArray[np.float64]  # stratified CTR per arm at the last tick …
    variance: NDArray[np.float64]  # … and its variance
    shares: NDArray[np.float64]  # the split of new users at the end


def steer(
    rng: np.random.Generator,
    *,
    experiments: int,
    ticks: int,
    users: int,
    ctr: tuple[float, ...],
    policy: str | None,
    floor: float = 0.1,
    sigma: float = 0.8,
    extra_impressions: float = 4,
    draws: int = 256,
) -> Steered:
    """Experiments whose split of new users a policy re-evaluates every tick, through the dashboard's own code.

    Each tick (= allocation period) ``users`` new users arrive and are split by the current shares; a user has
    1 + Poisson impressions and a click probability ``ctr·exp(σZ − σ²/2)`` (a log-normal taste, so impressions of one
    user are correlated). After each tick, exactly as the live system: per-period clustered sums → CTR standardised
    over the periods both arms share (``stratified_moments``) → relative lift → always-valid p (with the data
    gate) → the policy's next shares (``policy_step``, with its burn-in). ``policy=None`` keeps equal weights.
    """
    from experiments.stats.allocation import policy_step
    from experiments.stats.frequentist import ratio_moments, relative_lift_moments, stratified_moments
    from experiments.stats.sequential import DEFAULT_TAU, always_valid_p_update, enough_data

    true = np.asarray(ctr, dtype=float)
    e, k = experiments, true.size
    sums = np.zeros((6, e, ticks, k))
    shares = np.full((e, k), 1.0 / k)
    p_seq = np.ones((e, k - 1))
    regret = np.zeros(e)
    for t in range(ticks):
        arm = (rng.random((e, users))[..., None] > np.cumsum(shares, axis=-1)[:, None, :-1]).sum(axis=-1)
        n = 1 + rng.poisson(extra_impressions, (e, users))
        mean = true[arm]
        c = rng.binomial(n, np.minimum(1.0, mean * np.exp(sigma * rng.standard_normal((e, users)) - sigma**2 / 2)))
        regret += ((true.max() - mean) * n).sum(axis=-1)
        for a in range(k):
            m = arm == a
            na, ca = n * m, c * m
            sums[:, :, t, a] = [m.sum(-1), na.sum(-1), ca.sum(-1), (na * n).sum(-1), (ca * c).sum(-1), (na * c).sum(-1)]
        s = sums[:, :, : t + 1, :]
        ratio, var = ratio_moments(*s)
        both = ((s[0] >= 2) & (s[1] > 0)).all(axis=-1)
        weights = np.broadcast_to(np.where(both, s[1].sum(axis=-1), 0.0)[:, None, :], (e, k, t + 1))
        est, est_var = stratified_moments(np.swapaxes(ratio, 1, 2), np.swapaxes(var, 1, 2), weights)
        ready = (enough_data(s[2].sum(axis=1), s[0].sum(axis=1)).all(axis=-1)
                 & np.isfinite(est).all(axis=-1) & np.isfinite(est_var).all(axis=-1))
        lift, lift_var = relative_lift_moments(est[:, 1:], est_var[:, 1:], est[:, :1], est_var[:, :1])
        p_seq = np.where(ready[:, None], always_valid_p_update(p_seq, lift, lift_var, DEFAULT_TAU), p_seq)
        if policy is not None:
            shares = policy_step(shares, est, est_var, ready, policy=policy, floor=floor, rng=rng, draws=draws)
    return Steered(p_seq, regret, est, est_var, shares)
