"""Reads of an interleaved experiment: per-pair wins, losses and ties, and the figures a stats tick shows of them.

The counts come from ``InterleaveCredit`` (one row per request and arm with a counted click) in one
aggregate; the statistics are ``experiments.stats.preference``'s. Each pair's always-valid state is carried
from tick to tick in the payload, like the A/B report's sequential state.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import combinations
from typing import Any

from django.db import connection

from experiments.models import Arm, Experiment
from experiments.selectors.rollups import StatsInputs
from experiments.stats.preference import PairCounts, PreferenceState, pair_label, pair_report

# For each pair (a, b): per request with a click credited to a or b, the credits of each; then the outcomes.
_PAIRS_SQL = """
WITH per AS (
    SELECT p.a, p.b, c.request_id,
           coalesce(sum(c.clicks) FILTER (WHERE c.arm_id = p.a), 0) AS ca,
           coalesce(sum(c.clicks) FILTER (WHERE c.arm_id = p.b), 0) AS cb
    FROM unnest(%(a)s::bigint[], %(b)s::bigint[]) AS p(a, b)
    JOIN experiments_interleavecredit c ON c.experiment_id = %(experiment_id)s AND c.arm_id IN (p.a, p.b)
    GROUP BY p.a, p.b, c.request_id
)
SELECT a, b, count(*) FILTER (WHERE ca > cb), count(*) FILTER (WHERE ca < cb), count(*) FILTER (WHERE ca = cb)
FROM per GROUP BY a, b
"""

PAIR_FIELDS = (
    "pair", "arm_b", "wins", "losses", "ties", "win_rate", "win_rate_ci_low", "win_rate_ci_high", "delta", "sign_p",
    "pair_always_valid_p", "cs_low", "cs_high",
)


def _equal(weights: dict[str, float]) -> dict[str, float]:
    return {name: (1.0 if w > 0 else 0.0) for name, w in weights.items()}


def equal_split(inputs: StatsInputs) -> StatsInputs:
    """The inputs with every arm taking traffic weighted alike (team draft's split), in every period."""
    periods = [replace(p, weights=_equal(dict(p.weights))) for p in inputs.periods]
    return replace(inputs, weights=_equal(inputs.weights), periods=periods)


def arm_pairs(arm_names: list[str]) -> list[tuple[str, str]]:
    """Every pair of arms, in the report's arm order (a before b)."""
    return list(combinations(arm_names, 2))


def pair_counts_read(*, experiment: Experiment, pairs: list[tuple[Arm, Arm]]) -> dict[tuple[int, int], PairCounts]:
    """(a.id, b.id) → wins/losses/ties of a against b over the experiment's clicked interleaved requests."""
    if not pairs:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(_PAIRS_SQL, {"a": [a.id for a, _ in pairs], "b": [b.id for _, b in pairs],
                                    "experiment_id": experiment.id})
        found = {(a, b): PairCounts(int(w), int(lo), int(t)) for a, b, w, lo, t in cursor.fetchall()}
    return {(a.id, b.id): found.get((a.id, b.id), PairCounts(0, 0, 0)) for a, b in pairs}


def interleaving_section(*, experiment: Experiment, arms: list[Arm], previous: dict | None) -> dict[str, Any]:
    """``{"pairs": [...figures per pair], "state": {label: carried state}}`` for the payload of one tick."""
    by_name = {a.name: a for a in arms}
    names = [a.name for a in arms]
    pairs = arm_pairs(names)
    counts = pair_counts_read(experiment=experiment, pairs=[(by_name[a], by_name[b]) for a, b in pairs])
    carried = (previous or {}).get("state") or {}
    rows, state = [], {}
    for a, b in pairs:
        label = pair_label(a, b)
        figures, new_state = pair_report(counts[(by_name[a].id, by_name[b].id)],
                                         PreferenceState.from_dict(carried.get(label)))
        rows.append({"pair": label, "arm_a": a, "arm_b": b, **figures})
        state[label] = new_state.to_dict()
    return {"pairs": rows, "state": state}


def pair_point(section: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What the preference chart plots per pair at one tick."""
    return {
        row["pair"]: {"win_rate": row["win_rate"], "cs": [row["cs_low"], row["cs_high"]],
                      "always_valid_p": row["always_valid_p"], "decisive": row["decisive"]}
        for row in section["pairs"]
    }


def pair_rows(section: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Per-pair rows of the stats API and the exports (the CSV's pair columns, :data:`PAIR_FIELDS`)."""
    out = []
    for row in (section or {}).get("pairs", []):
        out.append({
            "pair": row["pair"], "arm": row["arm_a"], "arm_b": row["arm_b"], "wins": row["wins"],
            "losses": row["losses"], "ties": row["ties"], "win_rate": row["win_rate"],
            "win_rate_ci_low": row["ci_low"], "win_rate_ci_high": row["ci_high"], "delta": row["delta"],
            "sign_p": row["sign_p"], "pair_always_valid_p": row["always_valid_p"], "cs_low": row["cs_low"],
            "cs_high": row["cs_high"],
        })
    return out


def interleaving_weak_evidence(section: dict[str, Any] | None, arm: str, alpha: float = 0.05) -> list[str]:
    """Why promoting ``arm`` of an interleaved experiment rests on weak evidence (empty when it beats every rival)."""
    weak = []
    for row in (section or {}).get("pairs", []):
        if arm not in (row["arm_a"], row["arm_b"]):
            continue
        other = row["arm_b"] if row["arm_a"] == arm else row["arm_a"]
        rate = row["win_rate"]
        ahead = rate is not None and (rate > 0.5 if row["arm_a"] == arm else rate < 0.5)
        if not ahead or row["always_valid_p"] >= alpha:
            weak.append(f"Interleaving does not prefer {arm} over {other} with always-valid p < {alpha:g} "
                        f"(p = {row['always_valid_p']:.3g}, {row['wins']}–{row['losses']} decisive requests).")
    return weak
