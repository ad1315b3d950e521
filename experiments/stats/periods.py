"""Comparisons that stay unbiased when the traffic split changes over time.

Within one allocation period the weights are constant, so arms are compared on
the same stretch of time. Across periods CTR may drift (time of day, catalogue,
novelty) while a bandit or a promotion moves traffic between arms; pooling the
periods would then credit an arm for *when* it was served (Simpson's paradox).
So each arm's CTR is standardised to a common period mix:

    CTR*_a = Σ_p w_p · CTR_{a,p},   w_p ∝ impressions of all arms in period p,

over periods in which every arm being compared has data, and Var = Σ_p w_p² V_{a,p}.
A trend common to all arms enters every CTR*_a with the same weights and
cancels in their difference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from experiments.stats.frequentist import Estimate, ctr_estimate, stratified_ctr
from experiments.stats.summaries import AllocationPeriod, AnyRatioSummary, ClusteredRatioSummary

_EMPTY = ClusteredRatioSummary.empty()


def has_data(summary: AnyRatioSummary | None) -> bool:
    """At least two users (so a clustered variance exists) and some impressions."""
    return summary is not None and summary.n_users >= 2 and summary.sum_n > 0


def periods_with_data(periods: Sequence[AllocationPeriod], names: Sequence[str]) -> list[AllocationPeriod]:
    return [p for p in periods if all(has_data(p.arms.get(n)) for n in names)]


def standardised(names: Sequence[str], periods: Sequence[AllocationPeriod]) -> dict[str, Estimate]:
    """Each arm's CTR standardised to the traffic mix of ``periods`` (all must have data for all arms)."""
    weights = [sum(s.sum_n for s in p.arms.values()) for p in periods]
    return {n: stratified_ctr([p.arms[n] for p in periods], weights) for n in names}


@dataclass(frozen=True, slots=True)
class Comparison:
    treat: Estimate
    control: Estimate
    periods_used: int
    stratified: bool


def pairwise(
    arms: Mapping[str, AnyRatioSummary],
    periods: Sequence[AllocationPeriod] | None,
    *,
    treat: str,
    control: str,
) -> Comparison:
    """Treatment and control CTRs on the periods where both were served.

    With fewer than two periods, or none in common, the pooled totals (the
    latter is flagged by ``stratified=False`` with ``periods_used=0``).
    """
    if not periods or len(periods) < 2:
        return Comparison(ctr_estimate(arms[treat]), ctr_estimate(arms[control]), len(periods or []), False)
    common = periods_with_data(periods, [treat, control])
    if not common:
        return Comparison(ctr_estimate(arms[treat]), ctr_estimate(arms[control]), 0, False)
    est = standardised([treat, control], common)
    return Comparison(est[treat], est[control], len(common), True)


@dataclass(frozen=True, slots=True)
class Ranking:
    """Estimates on one common footing for P(best); arms absent are not competing."""

    estimates: dict[str, Estimate]
    periods_used: int
    stratified: bool


def competitors(arms: Mapping[str, AnyRatioSummary], periods: Sequence[AllocationPeriod] | None) -> Ranking:
    """The arms still in the race and their standardised CTRs.

    Competing = positive weight in the latest period that split traffic between
    at least two arms (so after a promotion P(best) stays at the last
    comparative state instead of crowning the only arm left) and some data.
    Their CTRs are standardised over the periods where all of them have data.
    Without periods, or without such a period, every arm with data, pooled.
    """
    pooled = Ranking({n: ctr_estimate(s) for n, s in arms.items() if has_data(s)}, len(periods or []), False)
    if not periods or len(periods) < 2:
        return pooled
    split = [p for p in periods if sum(1 for n in arms if p.weights.get(n, 0) > 0) >= 2]
    if not split:
        return Ranking(pooled.estimates, 0, False)
    names = [n for n in arms if split[-1].weights.get(n, 0) > 0 and any(has_data(p.arms.get(n)) for p in periods)]
    common = periods_with_data(periods, names)
    if len(names) < 2 or not common:
        return Ranking(pooled.estimates, 0, False)
    return Ranking(standardised(names, common), len(common), True)
