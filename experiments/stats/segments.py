"""CTR per arm within the segments of one user attribute, with a Holm correction across the segment values (pure).

Exploratory by construction: the experiment was not sized for any segment, and looking at many segments finds
"effects" by chance. Within each segment every arm's CTR has its clustered (per-user) interval and, against the
control, a relative lift with a fixed-horizon p-value; for each arm the p-values across the segment values are
Holm-adjusted, so "significant" means Holm-adjusted p < α.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from experiments.stats.frequentist import ctr_estimate, fixed_horizon_p, relative_lift
from experiments.stats.multiple import holm_adjust
from experiments.stats.summaries import ClusteredRatioSummary


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def segment_report(
    sums: Mapping[str, Mapping[str, ClusteredRatioSummary]], *, control: str, arms: list[str], alpha: float = 0.05,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """``sums[segment][arm]``: the clustered sums of that arm's users in that segment."""
    segments = sorted(sums, key=lambda s: (-sum(x.n_users for x in sums[s].values()), s))  # ties: by name
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    p_by_arm: dict[str, dict[str, float | None]] = {a: {} for a in arms if a != control}
    for seg in segments:
        rows[seg] = {}
        base = sums[seg].get(control)
        base_est = ctr_estimate(base) if base is not None and base.sum_n > 0 else None
        for arm in arms:
            s = sums[seg].get(arm)
            if s is None or s.sum_n <= 0:
                rows[seg][arm] = {"users": 0 if s is None else s.n_users, "impressions": 0, "clicks": 0, "ctr": None,
                                  "ctr_ci": None, "lift": None, "p_value": None}
                if arm != control:
                    p_by_arm[arm][seg] = None
                continue
            est = ctr_estimate(s)
            low, high = est.interval(confidence)
            row = {"users": s.n_users, "impressions": int(s.sum_n), "clicks": int(s.sum_c), "ctr": _finite(est.value),
                   "ctr_ci": [max(0.0, low), min(1.0, high)] if est.defined else None, "lift": None, "p_value": None}
            if arm != control and base_est is not None and base_est.value > 0 and s.n_users > 1 and base.n_users > 1:
                lift = relative_lift(est, base_est)
                p = fixed_horizon_p(lift) if lift.defined else math.nan
                row["lift"] = _finite(lift.value)
                row["p_value"] = _finite(p)
            if arm != control:
                p_by_arm[arm][seg] = row["p_value"]
            rows[seg][arm] = row
    for arm, ps in p_by_arm.items():
        adjusted = holm_adjust(ps)
        for seg in segments:
            row = rows[seg][arm]
            row["p_holm"] = adjusted.get(seg)
            row["significant"] = row["p_holm"] is not None and row["p_holm"] < alpha
    return {"segments": segments, "arms": arms, "control": control, "alpha": alpha, "rows": rows,
            "tests_per_arm": {arm: sum(p is not None for p in ps.values()) for arm, ps in p_by_arm.items()}}
