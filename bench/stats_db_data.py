"""The scratch data of bench_stats_db.py: the per-user rollups at 10M impressions, the serving traffic between two
ticks, and the checks that the tick computed every metric from them.

Generated in SQL (``INSERT … SELECT generate_series``, ``setseed`` first, so every run builds the same rows):

* ``ShopUser`` and ``ArmUserStat``: one rollup row per (user, allocation period), ~40% of users in two periods.
  A user keeps one arm (``arms[id mod k]``, sticky assignment) and has a latent propensity (a hash of the id,
  0.5–1.5, mean 1) that scales both their click rate and their purchase rate, so CUPED's covariate predicts
  something.
* ``Assignment``: one row per user (what serving writes on first sight; the tick's covariate rule reads it).
* ``ArmUserOutcome`` (same key as ``ArmUserStat``): per rollup row, views for ~35%, add-to-cart for ~8%, and a
  purchase for ~3% (arm-dependent, × the propensity) with a log-normal value (median ~30, exact cents).
* ``UserCovariate``: one row per user, as the tick records it on first fold: ~40% of users are returning, with
  1–40 impressions before their first exposure and clicks at their propensity; the others have none.

The outcome and CUPED running sums (``ArmEpochOutcomeSums``, ``ArmEpochCupedSums``) are left empty: the
bench's one-off backfill fold fills them from the rows above, as the first tick after migrating would.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from decimal import Decimal

import numpy as np

# The latent propensity of user ``col`` (0.5–1.5, mean 1), a hash so no table is needed to keep it.
_PROPENSITY = "(0.5 + mod({col} * 2654435761, 1000003)::float8 / 1000003)"
# A standard normal from two uniforms (Box–Muller); 1 − random() is in (0, 1].
_NORMAL = "(sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()))"
PURCHASE_BASE, PURCHASE_STEP = 0.025, 0.001  # purchase rate per rollup row of arm i: base + i·step (× propensity)
REVENUE_MU, REVENUE_SIGMA = 3.4, 0.7  # log-normal order value: median e^3.4 ≈ 30
# Per changed rollup row of a tick's traffic: the chance of a view, an add-to-cart and a purchase on it.
EVENT_SHARES = (0.15, 0.05, 0.02)


def rollup_generate(*, arm_ids: list[int], users: int, target_impressions: int) -> dict:
    """Users, then one rollup row per (user, period) — ~40% of users appear in two periods."""
    from django.db import connection

    rows_estimate = int(users * 1.4)
    mean_per_row = target_impressions / rows_estimate
    with connection.cursor() as cur:
        cur.execute("SELECT setseed(0.42)")
        cur.execute(
            "INSERT INTO experiments_shopuser (external_id, attributes, created_at)"
            " SELECT 'bench-' || g, '{}'::jsonb, now() FROM generate_series(1, %s) g",
            [users],
        )
        cur.execute("SELECT min(id) FROM experiments_shopuser")
        first_user = cur.fetchone()[0]
        # Impressions per row ~ uniform on 1..2m-1 (mean m); clicks ~ round(n·ctr_arm·propensity + noise), ≤ n.
        cur.execute(
            f"""
            INSERT INTO experiments_armuserstat (arm_id, user_id, epoch, impressions, clicks)
            SELECT arm_id, user_id, epoch, n,
                   LEAST(n, GREATEST(0, floor(n * (0.030 + 0.002 * arm_index) * propensity + random())::int))
              FROM (
                SELECT (%(arms)s::bigint[])[1 + mod(u.id, %(k)s)] AS arm_id, mod(u.id, %(k)s) AS arm_index,
                       u.id AS user_id, {_PROPENSITY.format(col="u.id")} AS propensity,
                       e.epoch, 1 + floor(random() * (2 * %(mean)s - 1))::int AS n
                  FROM experiments_shopuser u
                  CROSS JOIN LATERAL (
                      SELECT mod(u.id, 3) AS epoch
                      UNION ALL
                      SELECT mod(mod(u.id, 3) + 1, 3) WHERE mod(u.id, 5) < 2
                  ) e
                 WHERE u.id >= %(first)s
              ) r
            """,
            {"arms": arm_ids, "k": len(arm_ids), "mean": mean_per_row, "first": first_user},
        )
        cur.execute("ANALYZE experiments_armuserstat")
        cur.execute("SELECT count(*), sum(impressions), sum(clicks), min(id) FROM experiments_armuserstat")
        rows, impressions, clicks, first_row_id = cur.fetchone()
    return {"rows": rows, "impressions": int(impressions), "clicks": int(clicks), "users": users,
            "first_row_id": first_row_id, "first_user": first_user}


def business_generate(*, experiment_id: int, arm_ids: list[int], first_user: int) -> dict:
    """Assignments, the outcome rollup and the covariates of the users ``rollup_generate`` made (module doc)."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT setseed(0.43)")
        cur.execute(
            f"""
            INSERT INTO experiments_usercovariate (experiment_id, user_id, first_exposure_at, pre_impressions,
                                                   pre_clicks, recorded_at)
            SELECT %(exp)s, id, now() - make_interval(secs => 86400 * (1 + 13 * random())), n0,
                   LEAST(n0, floor(n0 * 0.035 * propensity + random())::int), now()
              FROM (SELECT u.id, {_PROPENSITY.format(col="u.id")} AS propensity,
                           CASE WHEN random() < 0.4 THEN 1 + floor(random() * 40)::int ELSE 0 END AS n0
                      FROM experiments_shopuser u WHERE u.id >= %(first)s) k
            """,
            {"exp": experiment_id, "first": first_user},
        )
        cur.execute(
            """
            INSERT INTO experiments_assignment (user_id, experiment_id, arm_id, bucket, assigned_at)
            SELECT k.user_id, k.experiment_id, (%(arms)s::bigint[])[1 + mod(k.user_id, %(k)s)], mod(k.user_id, 10000),
                   k.first_exposure_at
              FROM experiments_usercovariate k WHERE k.experiment_id = %(exp)s
            """,
            {"exp": experiment_id, "arms": arm_ids, "k": len(arm_ids)},
        )
        cur.execute(
            f"""
            INSERT INTO experiments_armuseroutcome (arm_id, user_id, epoch, views, carts, purchases, revenue)
            SELECT arm_id, user_id, epoch, views, GREATEST(carts, purchases), purchases,
                   CASE WHEN purchases > 0 THEN round((purchases * exp(%(mu)s + %(sigma)s * z))::numeric, 2)
                        ELSE 0 END
              FROM (
                SELECT s.arm_id, s.user_id, s.epoch,
                       CASE WHEN random() < 0.35 THEN 1 + floor(random() * 6)::int ELSE 0 END AS views,
                       CASE WHEN random() < 0.08 THEN 1 + floor(random() * 2)::int ELSE 0 END AS carts,
                       CASE WHEN random() < (%(base)s + %(step)s * (array_position(%(arms)s::bigint[], s.arm_id) - 1))
                                            * {_PROPENSITY.format(col="s.user_id")}
                            THEN 1 + (random() < 0.2)::int ELSE 0 END AS purchases,
                       {_NORMAL} AS z
                  FROM experiments_armuserstat s WHERE s.arm_id = ANY(%(arms)s)
              ) o
             WHERE views > 0 OR carts > 0 OR purchases > 0
            """,
            {"arms": arm_ids, "base": PURCHASE_BASE, "step": PURCHASE_STEP, "mu": REVENUE_MU, "sigma": REVENUE_SIGMA},
        )
        for table in ("usercovariate", "assignment", "armuseroutcome"):
            cur.execute(f"ANALYZE experiments_{table}")
        cur.execute("SELECT count(*), count(*) FILTER (WHERE pre_impressions > 0) FROM experiments_usercovariate")
        covariates, returning = cur.fetchone()
        cur.execute("SELECT count(*), sum(views), sum(carts), count(*) FILTER (WHERE purchases > 0), sum(purchases),"
                    " sum(revenue), count(DISTINCT user_id) FILTER (WHERE purchases > 0) FROM experiments_armuseroutcome")
        rows, views, carts, purchasers, purchases, revenue, purchasing_users = cur.fetchone()
    return {"covariates": covariates, "returning_users": returning, "outcome_rows": rows, "views": int(views or 0),
            "carts": int(carts or 0), "purchaser_rows": purchasers, "purchases": int(purchases or 0),
            "revenue": float(revenue or 0), "purchasing_users": purchasing_users}


def item_create() -> int:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO experiments_item (external_id, title, category, features, active, created_at, updated_at)"
            " VALUES ('bench-item', '', '', '{}'::jsonb, true, now(), now()) RETURNING id"
        )
        return cur.fetchone()[0]


_NEW_USERS_SQL = """
WITH u AS (
    INSERT INTO experiments_shopuser (external_id, attributes, created_at)
    SELECT 'bench-new-' || %(tick)s || '-' || g, '{}'::jsonb, now() FROM generate_series(1, %(n)s) g
    RETURNING id, (%(arms)s::bigint[])[1 + mod(id, %(k)s)] AS arm_id
), assigned AS (
    INSERT INTO experiments_assignment (user_id, experiment_id, arm_id, bucket, assigned_at)
    SELECT id, %(exp)s, arm_id, mod(id, 10000), now() FROM u
), shown AS (
    INSERT INTO experiments_impression (request_id, user_id, item_id, experiment_id, arm_id, position, score,
                                        propensity, model_version, served_at, epoch)
    SELECT md5('new:' || u.id)::uuid, u.id, %(item)s, %(exp)s, u.arm_id, g, 0.5, 0.1, 1, now(), %(epoch)s
      FROM u, generate_series(1, 2) g
)
INSERT INTO experiments_armuserstat (arm_id, user_id, epoch, impressions, clicks)
SELECT arm_id, id, %(epoch)s, 2, 0 FROM u
"""

# As services.business_events / bulk_events: counted events add to the outcome row of the impression's key.
_EVENTS_SQL = """
INSERT INTO experiments_armuseroutcome (arm_id, user_id, epoch, views, carts, purchases, revenue)
SELECT s.arm_id, s.user_id, s.epoch, v.views, v.carts, v.purchases, v.revenue
  FROM unnest(%s::bigint[], %s::int[], %s::int[], %s::int[], %s::numeric[]) AS v(id, views, carts, purchases, revenue)
  JOIN experiments_armuserstat s ON s.id = v.id
ON CONFLICT (arm_id, user_id, epoch) DO UPDATE SET
    views = experiments_armuseroutcome.views + EXCLUDED.views,
    carts = experiments_armuseroutcome.carts + EXCLUDED.carts,
    purchases = experiments_armuseroutcome.purchases + EXCLUDED.purchases,
    revenue = experiments_armuseroutcome.revenue + EXCLUDED.revenue
"""


class Traffic:
    """One busy second of serving and event ingestion between two ticks, written as serving writes it.

    ``changed`` existing rollup rows gain 2 impressions (and a click 10% of the time); of those, EVENT_SHARES
    see a view, an add-to-cart or a purchase (the purchases change ``purchases``/``revenue``, which puts the
    outcome row in the partial index ``armuseroutcome_unfolded``); and ``changed // 50`` first-sight users get
    their assignment, 2 impressions and their first rollup row (the tick then records their covariate).
    """

    def __init__(self, *, connection, experiment_id: int, arm_ids: list[int], item_id: int, epoch: int,
                 rows: int, first_row_id: int, seed: int = 7):
        self.connection, self.experiment_id, self.arm_ids, self.item_id, self.epoch = (
            connection, experiment_id, arm_ids, item_id, epoch)
        self.rows, self.first_row_id = rows, first_row_id
        self.rng = np.random.default_rng(seed)
        self.ticks = 0
        self.totals = {"rollup_rows": 0, "new_users": 0, "views": 0, "carts": 0, "purchases": 0}

    def __call__(self, changed: int) -> None:
        rng = self.rng
        ids = rng.choice(self.rows, size=changed, replace=False) + self.first_row_id
        views = (rng.random(changed) < EVENT_SHARES[0]).astype(int)
        carts = (rng.random(changed) < EVENT_SHARES[1]).astype(int)
        purchases = (rng.random(changed) < EVENT_SHARES[2]).astype(int)
        value = np.round(np.exp(rng.normal(REVENUE_MU, REVENUE_SIGMA, changed)), 2)
        carts = np.maximum(carts, purchases)  # a purchase comes after its add-to-cart
        ev = (views + carts + purchases) > 0
        revenue = [str(Decimal(str(v)) if p else Decimal(0)) for v, p in zip(value[ev], purchases[ev], strict=True)]
        new_users = max(1, changed // 50)
        self.ticks += 1
        with self.connection.cursor() as cur:
            cur.execute(
                "UPDATE experiments_armuserstat SET impressions = impressions + 2,"
                " clicks = clicks + (random() < 0.1)::int WHERE id = ANY(%s)",
                [ids.tolist()],
            )
            cur.execute(_EVENTS_SQL, [ids[ev].tolist(), views[ev].tolist(), carts[ev].tolist(),
                                      purchases[ev].tolist(), revenue])
            cur.execute(_NEW_USERS_SQL, {"tick": self.ticks, "n": new_users, "arms": self.arm_ids,
                                         "k": len(self.arm_ids), "exp": self.experiment_id, "item": self.item_id,
                                         "epoch": self.epoch})
        for key, count in (("rollup_rows", changed), ("new_users", new_users), ("views", int(views.sum())),
                           ("carts", int(carts.sum())), ("purchases", int(purchases.sum()))):
            self.totals[key] += count


@contextmanager
def metric_fold_timed(out: dict[str, list[float]]):
    """Times ``metric_fold.outcome_fold`` and ``cuped_fold`` inside whatever ticks run in the block: one entry
    per call appended to ``out["outcome"]`` and ``out["cuped"]`` (the folds run on the tick's cursor, so this is
    their cost in the real tick, not a re-run)."""
    from experiments.services import metric_fold

    originals = {"outcome": metric_fold.outcome_fold, "cuped": metric_fold.cuped_fold}

    def wrap(name):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return originals[name](*args, **kwargs)
            finally:
                out.setdefault(name, []).append(time.perf_counter() - started)
        return timed

    metric_fold.outcome_fold, metric_fold.cuped_fold = wrap("outcome"), wrap("cuped")
    try:
        yield out
    finally:
        metric_fold.outcome_fold, metric_fold.cuped_fold = originals["outcome"], originals["cuped"]


def payload_check(payload: dict) -> None:
    """Fails unless the tick computed the three metrics for every arm and CUPED for every arm (not skipped)."""
    from experiments.business_models import METRICS

    metrics = {m["name"]: m for m in payload.get("metrics") or []}
    if sorted(metrics) != sorted(METRICS) or len(payload["metrics"]) != len(METRICS):
        raise RuntimeError(f"tick payload has metrics {list(metrics)}, expected {list(METRICS)}")
    for name, section in metrics.items():
        empty = [row["arm"] for row in section["arms"] if row.get("value") is None or not row.get("users")]
        if empty or not section["arms"]:
            raise RuntimeError(f"metric {name}: no value for arms {empty}")
    for name in ("conversion_rate", "revenue_per_user"):
        if not all(row["value"] > 0 for row in metrics[name]["arms"]):
            raise RuntimeError(f"metric {name}: zero for some arm (no purchases folded?)")
    for row in metrics["ctr"]["arms"]:
        cuped = row.get("cuped")
        if not cuped or any(cuped.get(key) is None for key in ("value", "variance_reduction", "theta")):
            raise RuntimeError(f"CUPED missing for arm {row['arm']}: {cuped}")


_OUTCOME_SCAN_SQL = """
SELECT arm_id, epoch, count(*) FILTER (WHERE purchases > 0), sum(purchases), sum(revenue), sum(revenue * revenue)
  FROM experiments_armuseroutcome WHERE arm_id = ANY(%s) GROUP BY arm_id, epoch
"""

_CUPED_SCAN_SQL = """
SELECT s.arm_id, s.epoch, count(*), sum(k.pre_impressions), sum(k.pre_clicks),
       sum(k.pre_impressions::bigint * k.pre_impressions), sum(k.pre_clicks::bigint * k.pre_clicks),
       sum(k.pre_impressions::bigint * k.pre_clicks), sum(s.impressions::bigint * k.pre_impressions),
       sum(s.impressions::bigint * k.pre_clicks), sum(s.clicks::bigint * k.pre_impressions),
       sum(s.clicks::bigint * k.pre_clicks)
  FROM experiments_armuserstat s
  JOIN experiments_usercovariate k ON k.user_id = s.user_id AND k.experiment_id = %s
 WHERE s.arm_id = ANY(%s) AND s.impressions > 0
 GROUP BY s.arm_id, s.epoch
"""


def running_sums_check(*, experiment_id: int, arm_ids: list[int]) -> None:
    """The outcome and CUPED running sums the ticks folded equal a scan of the per-user rows."""
    from django.db import connection

    from experiments.business_models import ArmEpochCupedSums, ArmEpochOutcomeSums
    from experiments.selectors.metrics import CUPED_FIELDS

    with connection.cursor() as cur:
        cur.execute(_OUTCOME_SCAN_SQL, [arm_ids])
        outcome = {(a, e): (int(p), int(k), Decimal(r), Decimal(rr)) for a, e, p, k, r, rr in cur.fetchall()}
        cur.execute(_CUPED_SCAN_SQL, [experiment_id, arm_ids])
        cuped = {(row[0], row[1]): tuple(int(x) for x in row[2:]) for row in cur.fetchall()}
    folded = {(a, e): (int(p), int(k), Decimal(r), Decimal(rr)) for a, e, p, k, r, rr in
              ArmEpochOutcomeSums.objects.filter(arm_id__in=arm_ids).values_list(
                  "arm_id", "epoch", "purchasers", "purchases", "revenue", "revenue_sq")}
    outcome = {key: v for key, v in outcome.items() if any(v)}
    if {key: v for key, v in folded.items() if any(v)} != outcome:
        raise RuntimeError(f"outcome running sums differ from the scan: {folded} != {outcome}")
    folded_cuped = {(row[0], row[1]): tuple(int(x) for x in row[2:]) for row in
                    ArmEpochCupedSums.objects.filter(arm_id__in=arm_ids).values_list("arm_id", "epoch", "users",
                                                                                    *CUPED_FIELDS)}
    if folded_cuped != cuped:
        raise RuntimeError(f"CUPED running sums differ from the scan: {folded_cuped} != {cuped}")


def impressions_generate(*, experiment_id: int, item_id: int) -> dict:
    """Expands every rollup row into its impressions (and its first ``clicks`` of them into clicks).

    The few impressions the traffic wrote for new users go first (their rollup rows are expanded like the
    others). The scratch table loses its secondary indexes first so that 10M rows load in minutes; the scan
    reads the whole table either way.
    """
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("DELETE FROM experiments_impression")
        cur.execute("ALTER TABLE experiments_impression DROP CONSTRAINT IF EXISTS impression_unique_request_position")
        cur.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'experiments_impression' AND indexname NOT LIKE '%%pkey'"
        )
        for (name,) in cur.fetchall():
            cur.execute(f'DROP INDEX IF EXISTS "{name}"')
        cur.execute("SET session_replication_role = replica")  # skip FK triggers on the scratch load
        cur.execute(
            """
            INSERT INTO experiments_impression
                   (request_id, user_id, item_id, experiment_id, arm_id, position, score, propensity,
                    model_version, served_at, epoch)
            SELECT md5(s.user_id::text || ':' || s.epoch)::uuid, s.user_id, %s, %s, s.arm_id, g, 0.5, 0.1, 1, now(), s.epoch
              FROM experiments_armuserstat s, generate_series(1, s.impressions) g
            """,
            [item_id, experiment_id],
        )
        cur.execute(
            """
            INSERT INTO experiments_click (impression_id, clicked_at, late, arm_id, served_at, user_id, item_id, position)
            SELECT i.id, now(), false, i.arm_id, i.served_at, i.user_id, i.item_id, i.position
              FROM experiments_impression i
              JOIN experiments_armuserstat s ON s.arm_id = i.arm_id AND s.user_id = i.user_id AND s.epoch = i.epoch
             WHERE i.position <= s.clicks
            """
        )
        cur.execute("SET session_replication_role = origin")
        cur.execute("ANALYZE experiments_impression")
        cur.execute("ANALYZE experiments_click")
        cur.execute("SELECT count(*) FROM experiments_impression")
        impressions = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM experiments_click")
        clicks = cur.fetchone()[0]
    return {"impressions": impressions, "clicks": clicks}
