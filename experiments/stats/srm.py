"""Sample-ratio mismatch: are arms getting the traffic the weights promise?

A χ² goodness-of-fit test of observed assignment units (users) per arm against
the configured weights. Impressions are not the randomisation unit: a few heavy
users make impression counts over-dispersed and the χ² would cry wolf, so the
default unit is users.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scipy import stats as sps

SRM_P_THRESHOLD = 0.001
SRM_MIN_IMPRESSIONS = 100


@dataclass(frozen=True, slots=True)
class SrmResult:
    chi2: float
    dof: int
    p_value: float
    counts: dict[str, float]
    expected: dict[str, float]
    alert: bool
    enough_data: bool

    def to_dict(self) -> dict[str, object]:
        return {
            "chi2": self.chi2,
            "dof": self.dof,
            "p_value": self.p_value,
            "counts": dict(self.counts),
            "expected": dict(self.expected),
            "alert": self.alert,
            "enough_data": self.enough_data,
        }


def srm_test(
    counts: Mapping[str, float],
    weights: Mapping[str, float],
    *,
    impressions: float | None = None,
    threshold: float = SRM_P_THRESHOLD,
    min_impressions: float = SRM_MIN_IMPRESSIONS,
) -> SrmResult:
    """χ² test of ``counts`` against ``weights`` (normalised to sum to 1).

    Alerts when p < ``threshold`` and there are at least ``min_impressions``
    impressions (``impressions`` defaults to the total count). Arms with weight 0
    are expected to get nothing: any unit there is a mismatch (p = 0).
    """
    names = sorted(set(weights) | set(counts))
    total_w = sum(float(weights.get(a, 0.0)) for a in names)
    if total_w <= 0:
        raise ValueError("weights must not all be zero")
    if any(float(counts.get(a, 0)) < 0 for a in names):
        raise ValueError("counts must be >= 0")
    obs = {a: float(counts.get(a, 0)) for a in names}
    total = sum(obs.values())
    exp = {a: total * float(weights.get(a, 0.0)) / total_w for a in names}
    live = [a for a in names if exp[a] > 0]
    if any(exp[a] == 0 and obs[a] > 0 for a in names):
        chi2, p = math.inf, 0.0
    elif total == 0 or len(live) < 2:
        chi2, p = 0.0, 1.0
    else:
        chi2 = sum((obs[a] - exp[a]) ** 2 / exp[a] for a in live)
        p = float(sps.chi2.sf(chi2, len(live) - 1))
    enough = (total if impressions is None else impressions) >= min_impressions
    return SrmResult(
        chi2=float(chi2),
        dof=max(len(live) - 1, 0),
        p_value=p,
        counts=obs,
        expected=exp,
        alert=bool(p < threshold and enough),
        enough_data=bool(enough),
    )


def srm_across_periods(
    results: Sequence[SrmResult],
    *,
    threshold: float = SRM_P_THRESHOLD,
) -> tuple[float, bool]:
    """Experiment-level SRM over allocation periods: Bonferroni on the period p-values.

    Each period is tested against its own weights; checking P periods gives P
    chances of a false alarm, hence p·P. Alerts when a period with enough
    impressions has p·P < ``threshold``. Returns (adjusted min p, alert).
    """
    if not results:
        return 1.0, False
    m = len(results)
    p = min(1.0, min(r.p_value for r in results) * m)
    alert = any(r.enough_data and r.p_value * m < threshold for r in results)
    return p, bool(alert)
