"""Evaluate a target policy on a slot-level log, refitting the reward model in every bootstrap replicate.

``estimators.evaluate`` takes the reward model's predictions as given, so its DM
interval only reflects the resampling of contexts — a few thousandths of a point
when the model is a smooth table. Here the cross-fitted item × slot model is
refitted on each resample, so DM and DR intervals carry the model's own noise.

The target policy is given per *context group* (for instance per user): an
``(n_groups, n_items, n_slots)`` array of exact slot probabilities, with each row
pointing at its group. Pure NumPy, no Django.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from experiments.offline.estimators import ESTIMATORS, LoggedFeedback, PolicyEstimate, estimate
from experiments.offline.reward_model import CrossFitted, cross_fit_item_slot_ctr


def _feedback(
    model: CrossFitted,
    *,
    item: np.ndarray,
    slot: np.ndarray,
    reward: np.ndarray,
    propensity: np.ndarray,
    group: np.ndarray,
    policy: np.ndarray,
) -> LoggedFeedback:
    # expected[g, f, s] = Σ_a π_g(a, s) q̂_f(a, s)
    expected = np.einsum("gas,fas->gfs", policy, model.tables)
    return LoggedFeedback(
        reward=reward,
        propensity=propensity,
        target_probability=policy[group, item, slot],
        reward_hat=model.tables[model.fold, item, slot],
        target_reward_hat=expected[group, model.fold, slot],
        slot=slot,
    )


def evaluate_with_refit(
    *,
    item: np.ndarray,
    slot: np.ndarray,
    reward: np.ndarray,
    propensity: np.ndarray,
    group: np.ndarray,
    policy: np.ndarray,
    estimators: Sequence[str] = ESTIMATORS,
    n_bootstrap: int = 1000,
    level: float = 0.95,
    n_folds: int = 5,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[PolicyEstimate], LoggedFeedback]:
    """Point estimates on the whole log and percentile intervals from ``n_bootstrap`` refitted resamples.

    ``item`` and ``slot`` are 0-based indices into ``policy``'s last two axes; ``group``
    indexes its first axis. Returns the estimates and the full-log feedback (for diagnostics).
    ``progress(done, total)``, if given, is called after every ~5% of the replicates.
    """
    if n_bootstrap < 2:
        raise ValueError("n_bootstrap must be at least 2")
    if not 0.0 < level < 1.0:
        raise ValueError("level must lie in (0, 1)")
    item, slot, group = (np.asarray(a, dtype=np.int64) for a in (item, slot, group))
    reward, propensity = np.asarray(reward, dtype=np.float64), np.asarray(propensity, dtype=np.float64)
    policy = np.asarray(policy, dtype=np.float64)
    if policy.ndim != 3:
        raise ValueError(f"policy must be (n_groups, n_items, n_slots), got shape {policy.shape}")
    _, n_items, n_slots = policy.shape

    def fit(rows: np.ndarray, fit_seed: int) -> LoggedFeedback:
        model = cross_fit_item_slot_ctr(
            item[rows], slot[rows], reward[rows], n_items=n_items, n_slots=n_slots, n_folds=n_folds, seed=fit_seed
        )
        return _feedback(
            model,
            item=item[rows],
            slot=slot[rows],
            reward=reward[rows],
            propensity=propensity[rows],
            group=group[rows],
            policy=policy,
        )

    n = item.shape[0]
    full = fit(np.arange(n), seed)
    rng = np.random.default_rng(seed)
    draws = np.empty((n_bootstrap, len(estimators)))
    for b in range(n_bootstrap):
        replicate = fit(rng.integers(0, n, n), seed + 1 + b)
        draws[b] = [estimate(replicate, name) for name in estimators]
        if progress is not None and ((b + 1) % max(1, n_bootstrap // 20) == 0 or b + 1 == n_bootstrap):
            progress(b + 1, n_bootstrap)
    alpha = 1.0 - level
    low, high = np.quantile(draws, [alpha / 2, 1 - alpha / 2], axis=0)
    results = [
        PolicyEstimate(
            estimator=name,
            value=estimate(full, name),
            ci_low=float(low[j]),
            ci_high=float(high[j]),
            std_error=float(draws[:, j].std(ddof=1)),
            n=n,
            level=level,
        )
        for j, name in enumerate(estimators)
    ]
    return results, full
