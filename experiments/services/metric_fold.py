"""The stats tick's folds beside CTR's: the outcome rollup into ArmEpochOutcomeSums, CUPED's sums into
ArmEpochCupedSums, and each new user's pre-exposure covariate into UserCovariate.

Both folds work like ``services.stats_tick.rollup_fold`` (which calls them inside its transaction): only rows
changed since the last tick are read, through a partial index, locked, marked folded and their per-user deltas
added into the running sums, so a tick costs the traffic since the last one, never the size of the experiment.

* outcome: a user going from (purchases p, revenue r) to (p', r') moves the purchasers by [p' > 0] − [p > 0],
  Σrevenue by r' − r and Σrevenue² by r'² − r² (exact decimal arithmetic: money is never a float here).
* CUPED (``stats.cuped.CupedSums``): a user new to an (arm, period) adds their covariate (n0, c0) to the
  covariate sums (n0, c0, n0², c0², n0·c0) and one to ``users``; any change (n, c) → (n', c') moves the cross
  sums by (n' − n)·n0, (n' − n)·c0, (c' − c)·n0 and (c' − c)·c0.

SQL texts are constants; every value is a parameter.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np

# Mirrors the predicate of the partial index ``armuseroutcome_unfolded`` so the planner can use it.
_OUTCOME_PICK_SQL = """
SELECT id, arm_id, epoch, purchases, revenue, folded_purchases, folded_revenue
  FROM experiments_armuseroutcome
 WHERE arm_id = ANY(%s)
   AND (NOT (purchases = folded_purchases) OR NOT (revenue = folded_revenue))
   FOR UPDATE
"""

_OUTCOME_MARK_SQL = """
UPDATE experiments_armuseroutcome o
   SET folded_purchases = v.p, folded_revenue = v.r
  FROM unnest(%s::bigint[], %s::int[], %s::numeric[]) AS v(id, p, r)
 WHERE o.id = v.id
"""

_OUTCOME_ADD_SQL = """
INSERT INTO experiments_armepochoutcomesums (arm_id, epoch, purchasers, purchases, revenue, revenue_sq)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (arm_id, epoch) DO UPDATE SET
    purchasers = experiments_armepochoutcomesums.purchasers + EXCLUDED.purchasers,
    purchases = experiments_armepochoutcomesums.purchases + EXCLUDED.purchases,
    revenue = experiments_armepochoutcomesums.revenue + EXCLUDED.revenue,
    revenue_sq = experiments_armepochoutcomesums.revenue_sq + EXCLUDED.revenue_sq
"""

# The covariate of every user in the batch who has none yet for the arm's experiment, by the export's rule
# (selectors/exports.py): first exposure = the earlier of the first impression in the experiment and the
# assignment; before it, the impressions of every experiment and their clicks that were not late and came before
# it. Index probes on impression_user_served per new user; recorded users are skipped by the unique index.
_COVARIATE_RECORD_SQL = """
INSERT INTO experiments_usercovariate (experiment_id, user_id, first_exposure_at, pre_impressions, pre_clicks,
                                       recorded_at)
SELECT x.experiment_id, x.user_id, x.first_at,
       (SELECT count(*) FROM experiments_impression i WHERE i.user_id = x.user_id AND i.served_at < x.first_at),
       (SELECT count(*) FROM experiments_impression i JOIN experiments_click c ON c.impression_id = i.id
         WHERE i.user_id = x.user_id AND i.served_at < x.first_at AND NOT c.late AND c.clicked_at < x.first_at),
       now()
  FROM (
    SELECT v.experiment_id, v.user_id, LEAST(
               (SELECT min(i.served_at) FROM experiments_impression i
                 WHERE i.user_id = v.user_id AND i.experiment_id = v.experiment_id),
               (SELECT a.assigned_at FROM experiments_assignment a
                 WHERE a.user_id = v.user_id AND a.experiment_id = v.experiment_id)) AS first_at
      FROM (SELECT DISTINCT arm.experiment_id, u.user_id
              FROM unnest(%s::bigint[], %s::bigint[]) AS u(arm_id, user_id)
              JOIN experiments_arm arm ON arm.id = u.arm_id) AS v
     WHERE NOT EXISTS (SELECT 1 FROM experiments_usercovariate k
                        WHERE k.experiment_id = v.experiment_id AND k.user_id = v.user_id)
  ) AS x
ON CONFLICT (experiment_id, user_id) DO NOTHING
"""

_COVARIATE_READ_SQL = """
SELECT u.arm_id, u.user_id, k.pre_impressions, k.pre_clicks
  FROM (SELECT DISTINCT * FROM unnest(%s::bigint[], %s::bigint[]) AS t(arm_id, user_id)) AS u
  JOIN experiments_arm arm ON arm.id = u.arm_id
  JOIN experiments_usercovariate k ON k.experiment_id = arm.experiment_id AND k.user_id = u.user_id
"""

_CUPED_ADD_SQL = """
INSERT INTO experiments_armepochcupedsums (arm_id, epoch, users, sum_n0, sum_c0, sum_n0n0, sum_c0c0, sum_n0c0,
                                           sum_nn0, sum_nc0, sum_cn0, sum_cc0)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (arm_id, epoch) DO UPDATE SET
    users = experiments_armepochcupedsums.users + EXCLUDED.users,
    sum_n0 = experiments_armepochcupedsums.sum_n0 + EXCLUDED.sum_n0,
    sum_c0 = experiments_armepochcupedsums.sum_c0 + EXCLUDED.sum_c0,
    sum_n0n0 = experiments_armepochcupedsums.sum_n0n0 + EXCLUDED.sum_n0n0,
    sum_c0c0 = experiments_armepochcupedsums.sum_c0c0 + EXCLUDED.sum_c0c0,
    sum_n0c0 = experiments_armepochcupedsums.sum_n0c0 + EXCLUDED.sum_n0c0,
    sum_nn0 = experiments_armepochcupedsums.sum_nn0 + EXCLUDED.sum_nn0,
    sum_nc0 = experiments_armepochcupedsums.sum_nc0 + EXCLUDED.sum_nc0,
    sum_cn0 = experiments_armepochcupedsums.sum_cn0 + EXCLUDED.sum_cn0,
    sum_cc0 = experiments_armepochcupedsums.sum_cc0 + EXCLUDED.sum_cc0
"""


def outcome_fold(cur, *, arm_ids: list[int]) -> int:
    """Adds the outcome rows changed since the last fold into ArmEpochOutcomeSums; returns how many it folded.

    Runs on ``rollup_fold``'s cursor, before its ArmUserStat fold: an event's impression (and so its user's
    rollup row) commits before the event, so every folded purchaser is already among the folded users.
    """
    cur.execute(_OUTCOME_PICK_SQL, [list(arm_ids)])
    rows = cur.fetchall()
    if not rows:
        return 0
    cur.execute(_OUTCOME_MARK_SQL, [[r[0] for r in rows], [r[3] for r in rows], [r[4] for r in rows]])
    deltas: dict[tuple[int, int], list] = {}
    for _, arm_id, epoch, p, r, fp, fr in rows:
        d = deltas.setdefault((arm_id, epoch), [0, 0, Decimal(0), Decimal(0)])
        d[0] += int(p > 0) - int(fp > 0)
        d[1] += p - fp
        d[2] += r - fr
        d[3] += r * r - fr * fr
    cur.executemany(_OUTCOME_ADD_SQL, [(a, e, *d) for (a, e), d in sorted(deltas.items())])
    return len(rows)


def cuped_fold(cur, *, arms: np.ndarray, users: np.ndarray, epochs: np.ndarray, n: np.ndarray, c: np.ndarray,
               fn: np.ndarray, fc: np.ndarray, new: np.ndarray) -> None:
    """Records the covariates of the batch's users who have none and adds the batch's CUPED deltas (module doc).

    The arrays are ``rollup_fold``'s picked rows: arm, user, epoch, counts now, counts folded, and ``new`` (the
    row enters the sums now).
    """
    cur.execute(_COVARIATE_RECORD_SQL, [arms.tolist(), users.tolist()])
    cur.execute(_COVARIATE_READ_SQL, [arms.tolist(), users.tolist()])
    known = {(a, u): (n0, c0) for a, u, n0, c0 in cur.fetchall()}
    pre = np.array([known.get(key, (0, 0)) for key in zip(arms.tolist(), users.tolist(), strict=True)],
                   dtype=np.int64).reshape(-1, 2)
    n0, c0 = pre[:, 0], pre[:, 1]
    dn, dc, k = n - fn, c - fc, new.astype(np.int64)
    deltas = []
    for arm_id, epoch in sorted(set(zip(arms.tolist(), epochs.tolist(), strict=True))):
        m = (arms == arm_id) & (epochs == epoch)
        km, n0m, c0m = k[m], n0[m], c0[m]
        deltas.append((
            arm_id, epoch, int(km.sum()), int((km * n0m).sum()), int((km * c0m).sum()), int((km * n0m * n0m).sum()),
            int((km * c0m * c0m).sum()), int((km * n0m * c0m).sum()), int((dn[m] * n0m).sum()),
            int((dn[m] * c0m).sum()), int((dc[m] * n0m).sum()), int((dc[m] * c0m).sum()),
        ))
    cur.executemany(_CUPED_ADD_SQL, deltas)
