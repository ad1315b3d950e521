"""Segments of an experiment's users, from the per-user rollups (``ArmUserStat``), never from the impressions."""

from __future__ import annotations

from typing import Any

from django.db import connection

from experiments.models import Arm, Experiment
from experiments.stats.segments import segment_report
from experiments.stats.summaries import ClusteredRatioSummary

NEW_VS_RETURNING = "new_vs_returning"
MAX_SEGMENTS = 12
OTHER = "(other)"
MISSING = "(not set)"

_KEYS_SQL = """
SELECT k, COUNT(*) FROM (
  SELECT DISTINCT s.user_id FROM experiments_armuserstat s WHERE s.arm_id = ANY(%s)
) users JOIN experiments_shopuser u ON u.id = users.user_id, jsonb_object_keys(u.attributes) AS k
GROUP BY k ORDER BY COUNT(*) DESC, k LIMIT 30
"""

# One row per (arm, segment value): the user-clustered sums, each user's rows summed over the periods first.
_SUMS_SQL = """
SELECT per_user.arm_id, {value} AS segment, COUNT(*), SUM(n), SUM(c), SUM(n * n), SUM(c * c), SUM(n * c)
  FROM (SELECT arm_id, user_id, SUM(impressions)::bigint AS n, SUM(clicks)::bigint AS c
          FROM experiments_armuserstat WHERE arm_id = ANY(%s) GROUP BY arm_id, user_id) per_user
  JOIN experiments_shopuser u ON u.id = per_user.user_id
 GROUP BY 1, 2
"""


def segment_attributes(*, experiment: Experiment) -> list[str]:
    """The attributes the experiment's users carry (most common first), and new versus returning."""
    arm_ids = list(experiment.arms.values_list("id", flat=True))
    with connection.cursor() as cur:
        cur.execute(_KEYS_SQL, [arm_ids])
        keys = [k for k, _ in cur.fetchall()]
    return [NEW_VS_RETURNING, *keys]


def experiment_segments(*, experiment: Experiment, attribute: str, alpha: float = 0.05) -> dict[str, Any]:
    """CTR per arm per value of ``attribute`` with intervals and Holm-adjusted p-values (``stats.segments``).

    ``new_vs_returning``: a user first seen before the experiment started is *returning*. The least common values
    beyond the first ``MAX_SEGMENTS`` are pooled into "(other)".
    """
    arms = list(experiment.arms.order_by("id"))
    by_id = {a.id: a.name for a in arms}
    params: list[Any]
    if attribute == NEW_VS_RETURNING:
        value = "CASE WHEN u.created_at < %s THEN 'returning' ELSE 'new' END"
        params = [experiment.started_at or experiment.created_at]
    else:
        value = f"COALESCE(u.attributes ->> %s, '{MISSING}')"
        params = [attribute]
    with connection.cursor() as cur:
        cur.execute(_SUMS_SQL.format(value=value), [*params, list(by_id)])
        raw = cur.fetchall()
    users_of: dict[str, int] = {}
    for _, seg, n_users, *_ in raw:
        users_of[seg] = users_of.get(seg, 0) + n_users
    kept = set(sorted(users_of, key=lambda s: (-users_of[s], s))[:MAX_SEGMENTS])
    sums: dict[str, dict[str, ClusteredRatioSummary]] = {}
    for arm_id, seg, n_users, sn, sc, snn, scc, snc in raw:
        seg = seg if seg in kept else OTHER
        summary = ClusteredRatioSummary(n_users=int(n_users), sum_n=float(sn), sum_c=float(sc), sum_nn=float(snn),
                                        sum_cc=float(scc), sum_nc=float(snc))
        current = sums.setdefault(seg, {}).get(by_id[arm_id])
        sums[seg][by_id[arm_id]] = summary if current is None else current + summary
    control = next((a.name for a in arms if a.id == experiment.control_arm_id), arms[0].name if arms else "")
    shown = [a.name for a in arms if a.status != Arm.Status.RETIRED]
    report = segment_report(sums, control=control, arms=shown, alpha=alpha)
    report["attribute"] = attribute
    return report
