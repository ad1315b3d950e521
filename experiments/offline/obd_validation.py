"""Cross-policy validation of the estimators on the Open Bandit Dataset.

Estimate the Bernoulli-TS policy's CTR from the uniform-random log and compare it
with the BTS log's own (on-policy) CTR; then the other way round. Pure NumPy.

Which "BTS policy"? Its logged propensities drift during the week (its posterior was
refreshed), so there is no single fixed table. The BTS log's on-policy CTR is
(1/n) Σ_i r_i ≈ Σ_k p(k) Σ_a π̄(a, k) q(a, k) when click rates are stable over the
week, where π̄ is the policy's *time-averaged* probability of item a in slot k. The
BTS log's empirical action frequencies per slot are an unbiased estimate of π̄, so
that is the target table we evaluate on the random log. (Averaging the logged
propensity per cell is *not* π̄: a cell is logged more often exactly when its
probability is high, so the average is size-biased; its columns sum to 2–3.7.)
For comparison we also evaluate the policy defined by ZOZOTOWN's production prior
(what OBP's examples evaluate), which is a different, fixed policy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from experiments.offline.estimators import (
    ESTIMATORS,
    LoggedFeedback,
    PolicyEstimate,
    effective_sample_size,
    estimate,
)
from experiments.offline.obd import OBDLog
from experiments.offline.reward_model import cross_fit_item_slot_ctr
from experiments.stats import wilson_interval


def action_frequency_policy(log: OBDLog, *, n_items: int, n_slots: int) -> np.ndarray:
    """(n_items, n_slots): share of each slot's rows that showed each item — the time-averaged policy."""
    counts = np.zeros((n_items, n_slots))
    np.add.at(counts, (log.item_id, log.slot), 1.0)
    return counts / counts.sum(axis=0, keepdims=True)


def mean_logged_propensity(log: OBDLog, *, n_items: int, n_slots: int) -> np.ndarray:
    """(n_items, n_slots): the average logged propensity per cell (0 where never logged). Diagnostic only."""
    total = np.zeros((n_items, n_slots))
    count = np.zeros((n_items, n_slots))
    np.add.at(total, (log.item_id, log.slot), log.propensity)
    np.add.at(count, (log.item_id, log.slot), 1.0)
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0)


def propensity_spread(log: OBDLog) -> float:
    """Median over logged (item, slot) cells of the coefficient of variation of the logged propensity."""
    keys = log.item_id * (log.slot.max() + 1) + log.slot
    cvs = [
        log.propensity[keys == key].std() / log.propensity[keys == key].mean()
        for key in np.unique(keys)
        if np.count_nonzero(keys == key) > 1
    ]
    return float(np.median(cvs))


def thompson_prior_policy(
    alpha: np.ndarray, beta: np.ndarray, *, n_slots: int, n_sim: int = 100_000, seed: int = 0
) -> np.ndarray:
    """(n_items, n_slots): P(item in slot k) when a slate is the top n_slots of θ ~ Beta(α, β), by Monte Carlo."""
    rng = np.random.default_rng(seed)
    n_items = alpha.shape[0]
    counts = np.zeros((n_items, n_slots))
    chunk = 10_000
    for start in range(0, n_sim, chunk):
        size = min(chunk, n_sim - start)
        theta = rng.beta(alpha, beta, size=(size, n_items))
        top = np.argsort(-theta, axis=1)[:, :n_slots]
        for k in range(n_slots):
            counts[:, k] += np.bincount(top[:, k], minlength=n_items)
    return counts / n_sim


def uniform_policy(*, n_items: int, n_slots: int) -> np.ndarray:
    return np.full((n_items, n_slots), 1.0 / n_items)


def context_free_feedback(log: OBDLog, target_policy: np.ndarray, *, n_folds: int = 5, seed: int = 0) -> LoggedFeedback:
    """The log seen by a context-free target policy, with a cross-fitted item × slot reward model."""
    n_items, n_slots = target_policy.shape
    model = cross_fit_item_slot_ctr(
        log.item_id, log.slot, log.click, n_items=n_items, n_slots=n_slots, n_folds=n_folds, seed=seed
    )
    return LoggedFeedback(
        reward=log.click,
        propensity=log.propensity,
        target_probability=target_policy[log.item_id, log.slot],
        reward_hat=model.logged(log.item_id, log.slot),
        target_reward_hat=model.expected(log.slot, target_policy),
        slot=log.slot,
    )


@dataclass(frozen=True)
class Truth:
    """A logging policy's on-policy CTR with its Wilson 95 % interval."""

    ctr: float
    ci_low: float
    ci_high: float
    std_error: float
    clicks: int
    n: int


def on_policy_truth(log: OBDLog) -> Truth:
    n, clicks = log.n, int(log.click.sum())
    p = clicks / n
    ci_low, ci_high = wilson_interval(p, n)
    return Truth(
        ctr=p,
        ci_low=ci_low,
        ci_high=ci_high,
        std_error=float(np.sqrt(p * (1 - p) / n)),
        clicks=clicks,
        n=n,
    )


@dataclass(frozen=True)
class Comparison:
    """One estimate against the truth: covered by the estimate's interval, and a z-score for
    (estimate − truth) using both standard errors, since the truth is itself a 10k-row sample."""

    estimate: PolicyEstimate
    truth: Truth
    covered: bool
    z: float


def compare(estimates: list[PolicyEstimate], truth: Truth) -> list[Comparison]:
    return [
        Comparison(
            estimate=e,
            truth=truth,
            covered=e.covers(truth.ctr),
            z=float((e.value - truth.ctr) / np.hypot(e.std_error, truth.std_error)),
        )
        for e in estimates
    ]


def refit_bootstrap(
    behaviour_log: OBDLog,
    target_policy: np.ndarray,
    *,
    target_log: OBDLog | None = None,
    estimators: tuple[str, ...] = ESTIMATORS,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Bootstrap draws of each estimator, refitting the reward model on every resample.

    Holding q̂ fixed would make DM's interval absurdly narrow: DM's uncertainty is
    almost all in q̂. With ``target_log`` given, the target table is rebuilt from a
    resample of that log too (``action_frequency_policy``), so the interval also
    carries the uncertainty of having estimated π̄.
    """
    rng = np.random.default_rng(seed)
    n_items, n_slots = target_policy.shape
    draws = {name: np.empty(n_bootstrap) for name in estimators}
    for b in range(n_bootstrap):
        policy = target_policy
        if target_log is not None:
            target_resample = target_log.take(rng.integers(0, target_log.n, target_log.n))
            policy = action_frequency_policy(target_resample, n_items=n_items, n_slots=n_slots)
        resample = behaviour_log.take(rng.integers(0, behaviour_log.n, behaviour_log.n))
        feedback = context_free_feedback(resample, policy, seed=seed + 1 + b)
        for name in estimators:
            draws[name][b] = estimate(feedback, name)
    return draws


@dataclass(frozen=True)
class DirectionReport:
    behaviour: str
    target: str
    comparisons: list[Comparison]
    effective_sample_size: float
    max_weight: float


def cross_policy_estimates(
    behaviour_log: OBDLog,
    target_log: OBDLog,
    target_policy: np.ndarray,
    *,
    target_name: str,
    resample_target_policy: bool = False,
    n_bootstrap: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> DirectionReport:
    """Estimate a context-free target policy's CTR on ``behaviour_log``; compare with ``target_log``'s CTR.

    ``resample_target_policy`` says the table was estimated from ``target_log`` and
    its uncertainty belongs in the interval.
    """
    feedback = context_free_feedback(behaviour_log, target_policy, seed=seed)
    draws = refit_bootstrap(
        behaviour_log,
        target_policy,
        target_log=target_log if resample_target_policy else None,
        n_bootstrap=n_bootstrap,
        seed=seed,
    )
    alpha = 1.0 - level
    estimates = []
    for name in ESTIMATORS:
        low, high = np.quantile(draws[name], [alpha / 2, 1 - alpha / 2])
        estimates.append(
            PolicyEstimate(
                estimator=name,
                value=estimate(feedback, name),
                ci_low=float(low),
                ci_high=float(high),
                std_error=float(draws[name].std(ddof=1)),
                n=feedback.n,
                level=level,
            )
        )
    return DirectionReport(
        behaviour=behaviour_log.policy,
        target=target_name,
        comparisons=compare(estimates, on_policy_truth(target_log)),
        effective_sample_size=effective_sample_size(feedback),
        max_weight=float(feedback.importance_weight.max()),
    )
