"""Sample size and duration of an experiment from its live numbers (pure; no Django).

The operator gives a minimum detectable effect (a relative lift of the CTR), α and power. The impressions each arm
needs come from :func:`~experiments.stats.frequentist.sample_size_per_arm` with the control's CTR as baseline and
the *measured* design effect (the clustered, per-user variance the report already computes), so users who see many
impressions make the experiment longer, as they should. With several challengers, α is split over the comparisons
with the control (Bonferroni, a bound on the Holm correction the report applies). Users per arm follow from the
control's impressions per user; the expected finish from each competing arm's current rate of impressions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from experiments.stats.frequentist import sample_size_per_arm


def experiment_plan(
    *,
    arms: Mapping[str, Mapping[str, Any]],
    control: str,
    mde: float,
    alpha: float,
    power: float,
    rates: Mapping[str, float],
) -> dict[str, Any]:
    """``arms``: the report's rows (``impressions``, ``users``, ``ctr``, ``design_effect``, ``weight``);
    ``rates``: impressions per second of each arm now. Raises ValueError naming what is missing."""
    if not 0 < mde < 10:
        raise ValueError("the minimum detectable effect is a relative lift between 0 and 10 (0.05 = +5%)")
    if not 0 < alpha < 0.5:
        raise ValueError("α lies between 0 and 0.5")
    if not 0.5 <= power < 1:
        raise ValueError("power lies between 0.5 and 1")
    base = arms.get(control)
    if base is None or not base.get("impressions") or not base.get("users") or not base.get("ctr"):
        raise ValueError("the control has no clicks yet: the baseline CTR and its variance are unknown")
    competing = [name for name, row in arms.items() if (row.get("weight") or 0) > 0]
    comparisons = max(1, len([name for name in competing if name != control]))
    deff = max(1.0, float(base.get("design_effect") or 1.0))
    baseline = float(base["ctr"])
    if baseline * (1 + mde) >= 1:
        raise ValueError("the baseline CTR times (1 + effect) must stay below 1")
    per_arm = sample_size_per_arm(baseline_ctr=baseline, relative_lift=mde, alpha=alpha / comparisons, power=power,
                                  design_effect=deff)
    per_user = float(base["impressions"]) / float(base["users"])
    rows = []
    for name in competing:
        have = float(arms[name].get("impressions") or 0)
        rate = float(rates.get(name) or 0.0)
        left = max(0.0, per_arm - have)
        rows.append({"arm": name, "impressions": int(have), "progress": min(1.0, have / per_arm),
                     "rate_per_s": rate, "seconds_left": 0.0 if left == 0 else (left / rate if rate > 0 else None)})
    waits = [r["seconds_left"] for r in rows]
    return {
        "mde": mde, "alpha": alpha, "power": power, "comparisons": comparisons, "alpha_per_comparison":
        alpha / comparisons, "baseline_ctr": baseline, "design_effect": deff,
        "impressions_per_arm": per_arm, "users_per_arm": int(math.ceil(per_arm / per_user)),
        "impressions_per_user": per_user, "arms": rows,
        "progress": min((r["progress"] for r in rows), default=0.0),
        "seconds_left": None if any(w is None for w in waits) else max(waits, default=0.0),
    }
