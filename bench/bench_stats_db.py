"""Stats tick at 10 arms × 10 million impressions: the rollup query vs scanning the impression log.

Builds a scratch database (``recsite_bench_dashboard``) whose ``ArmUserStat`` rollup
represents ~10M impressions: 500,000 users on 10 arms over 3 allocation periods
(some users in two periods), bulk-generated with ``INSERT … SELECT generate_series``.
Then times, medians over ``--reps`` runs after a warm-up:

* the grouped rollup query (``selectors.rollups.arm_epoch_sums``),
* the newcomers-per-period query used by SRM (``arm_first_epoch_users``),
* the whole tick payload (both queries + freshness + ``experiment_report``),
* the whole tick (payload + snapshot write + publish after commit),
* for contrast, the same sums computed by scanning the impression and click tables
  (the rollup expanded to one impression row each; ``--raw-impressions 0`` skips it).

Run: ``.venv/bin/python bench/bench_stats_db.py [--users 500000] [--reps 7] [--no-doc]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving_common import ROOT, bench_database_create, doc_section_write  # noqa: E402

DB = "recsite_bench_dashboard"
RESULTS = ROOT / "var" / "bench"
ARMS = 10
EPOCHS = 3


def timed(fn, reps: int) -> list[float]:
    fn()  # warm-up: plans cached, pages in shared buffers
    out = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def rollup_generate(*, experiment_id: int, arm_ids: list[int], users: int, target_impressions: int) -> dict:
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
        # Impressions per row ~ uniform on 1..2m-1 (mean m); clicks ~ round(n·ctr_arm + noise), ≤ n.
        cur.execute(
            """
            INSERT INTO experiments_armuserstat (arm_id, user_id, epoch, impressions, clicks)
            SELECT arm_id, user_id, epoch, n, LEAST(n, GREATEST(0, floor(n * (0.030 + 0.002 * arm_index) + random())::int))
              FROM (
                SELECT (%(arms)s::bigint[])[1 + (u.id %% %(k)s)] AS arm_id, (u.id %% %(k)s) AS arm_index, u.id AS user_id,
                       e.epoch, 1 + floor(random() * (2 * %(mean)s - 1))::int AS n
                  FROM experiments_shopuser u
                  CROSS JOIN LATERAL (
                      SELECT (u.id %% 3) AS epoch
                      UNION ALL
                      SELECT ((u.id %% 3) + 1) %% 3 WHERE u.id %% 5 < 2
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
            "first_row_id": first_row_id}


def impressions_generate(*, experiment_id: int) -> dict:
    """Expands every rollup row into its impressions (and its first ``clicks`` of them into clicks).

    The scratch table loses its secondary indexes first so that 10M rows load in
    minutes; the scan below reads the whole table either way.
    """
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("ALTER TABLE experiments_impression DROP CONSTRAINT IF EXISTS impression_unique_request_position")
        cur.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'experiments_impression' AND indexname NOT LIKE '%%pkey'"
        )
        for (name,) in cur.fetchall():
            cur.execute(f'DROP INDEX IF EXISTS "{name}"')
        cur.execute(
            "INSERT INTO experiments_item (external_id, title, category, features, active, created_at, updated_at)"
            " VALUES ('bench-item', '', '', '{}'::jsonb, true, now(), now()) RETURNING id"
        )
        item_id = cur.fetchone()[0]
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
            INSERT INTO experiments_click (impression_id, clicked_at, late)
            SELECT i.id, now(), false
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


RAW_SQL = """
    SELECT arm_id, epoch, count(*), sum(n), sum(c), sum(n::bigint * n), sum(c::bigint * c), sum(n::bigint * c)
      FROM (
        SELECT i.arm_id, i.user_id, i.epoch, count(*) AS n, count(c.id) FILTER (WHERE NOT c.late) AS c
          FROM experiments_impression i
          LEFT JOIN experiments_click c ON c.impression_id = i.id
         WHERE i.experiment_id = %s
         GROUP BY i.arm_id, i.user_id, i.epoch
      ) per_user
     GROUP BY arm_id, epoch
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=500_000)
    parser.add_argument("--impressions", type=int, default=10_000_000)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--changed", type=int, default=1_000, help="rollup rows changed between two ticks")
    parser.add_argument("--raw-reps", type=int, default=3)
    parser.add_argument("--raw-impressions", type=int, default=1, help="0 skips the raw-scan contrast")
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()

    bench_database_create(DB)
    from django.db import connection
    from django.utils import timezone

    from experiments.models import Arm, Experiment
    from experiments.selectors import results as result_selectors
    from experiments.selectors import rollups as rollup_selectors
    from experiments.services import stats_tick as tick_services

    experiment = Experiment.objects.create(
        slug="bench-10x10m", name="10 arms × 10M", salt="bench", status="running", started_at=timezone.now()
    )
    arms = [Arm.objects.create(experiment=experiment, name=f"arm-{i}", kind="popularity") for i in range(ARMS)]
    experiment.control_arm = arms[0]
    experiment.allocation_epoch = EPOCHS - 1
    experiment.save()
    arm_ids = [a.id for a in arms]

    started = time.perf_counter()
    data = rollup_generate(experiment_id=experiment.id, arm_ids=arm_ids, users=args.users, target_impressions=args.impressions)
    data["generate_s"] = time.perf_counter() - started
    print(f"rollup: {data['rows']:,} rows for {data['impressions']:,} impressions, {data['clicks']:,} clicks "
          f"({data['generate_s']:.1f} s)", flush=True)

    from django.db import transaction

    started = time.perf_counter()
    with transaction.atomic():
        data["backfill_rows"] = tick_services.rollup_fold(arm_ids=arm_ids)
    data["backfill_s"] = time.perf_counter() - started
    print(f"one-off backfill fold of {data['backfill_rows']:,} rows: {data['backfill_s']:.1f} s", flush=True)
    # What autovacuum does after the backfill rewrote every row (VACUUM cannot run in a transaction).
    connection.ensure_connection()
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE experiments_armuserstat")
    rng = np.random.default_rng(7)

    def traffic(changed: int) -> None:
        """One second of serving between ticks: ``changed`` rollup rows gain impressions and clicks."""
        ids = (rng.choice(data["rows"], size=changed, replace=False) + data["first_row_id"]).tolist()
        with connection.cursor() as cur:
            cur.execute(
                "UPDATE experiments_armuserstat SET impressions = impressions + 2,"
                " clicks = clicks + (random() < 0.1)::int WHERE id = ANY(%s)",
                [ids],
            )

    def tick_after_traffic(fn, changed: int):
        def run():
            traffic(changed)
            started = time.perf_counter()
            fn()
            return time.perf_counter() - started
        return run

    def fold_only():
        with transaction.atomic():
            tick_services.rollup_fold(arm_ids=arm_ids)

    results: dict[str, list[float]] = {}
    tick_run = tick_after_traffic(lambda: tick_services.stats_tick(experiment_id=experiment.id), args.changed)
    tick_stress = tick_after_traffic(lambda: tick_services.stats_tick(experiment_id=experiment.id), 5 * args.changed)
    fold_run = tick_after_traffic(fold_only, args.changed)
    tick_run()
    results[f"whole tick after {args.changed:,} changed rollup rows (fold + report + snapshot + publish)"] = [
        tick_run() for _ in range(args.reps)
    ]
    results[f"fold of {args.changed:,} changed rows alone"] = [fold_run() for _ in range(args.reps)]
    results[f"stress: whole tick after {5 * args.changed:,} changed rows"] = [tick_stress() for _ in range(args.reps)]
    results["tick payload read (running sums + report)"] = timed(
        lambda: result_selectors.experiment_stats_payload(experiment=experiment, previous=None), args.reps
    )
    results["contrast: grouped scan of the whole rollup (six sums)"] = timed(
        lambda: rollup_selectors.arm_epoch_sums_scan(arm_ids=arm_ids), args.reps
    )
    results["contrast: newcomers per period by scanning the rollup"] = timed(
        lambda: rollup_selectors.arm_first_epoch_users_scan(arm_ids=arm_ids), args.raw_reps
    )
    assert rollup_selectors.arm_epoch_sums(arm_ids=arm_ids) == rollup_selectors.arm_epoch_sums_scan(arm_ids=arm_ids)
    raw = None
    if args.raw_impressions:
        started = time.perf_counter()
        raw = impressions_generate(experiment_id=experiment.id)
        raw["generate_s"] = time.perf_counter() - started
        print(f"raw: {raw['impressions']:,} impressions, {raw['clicks']:,} clicks ({raw['generate_s']:.0f} s)", flush=True)

        def raw_scan():
            with connection.cursor() as cur:
                cur.execute(RAW_SQL, [experiment.id])
                return cur.fetchall()

        results["contrast: raw scan of impressions + clicks (six sums)"] = timed(raw_scan, args.raw_reps)
    for name, times in results.items():
        print(f"{name}: median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms", flush=True)

    RESULTS.mkdir(parents=True, exist_ok=True)
    with connection.cursor() as cur:
        cur.execute("SELECT version()")
        pg = cur.fetchone()[0].split(" on ")[0]
    (RESULTS / "dashboard_stats_db.json").write_text(
        json.dumps({"data": data, "raw": raw, "results": results, "reps": args.reps, "postgres": pg, "changed": args.changed,
                    "command": " ".join([".venv/bin/python bench/bench_stats_db.py", *(a for a in sys.argv[1:] if a != "--no-doc")])}, indent=2)
    )
    if not args.no_doc:
        dashboard_doc_write()
    return 0


def dashboard_doc_write() -> None:
    """The "## Dashboard" section of docs/benchmarks.md from whichever dashboard benches have run."""
    parts = []
    stats_file = RESULTS / "dashboard_stats_db.json"
    if stats_file.exists():
        s = json.loads(stats_file.read_text())
        d = s["data"]
        rows = "\n".join(
            f"| {name} | {statistics.median(t) * 1000:,.0f} ms | {max(t) * 1000:,.0f} ms | {len(t)} |"
            for name, t in s["results"].items()
        )
        tick_key = next(k for k in s["results"] if k.startswith("whole tick"))
        tick = statistics.median(s["results"][tick_key])
        verdict = "meets" if tick <= 1.0 else "MISSES"
        parts.append(
            f"""### Stats computation at 10 arms × 10M impressions

`{s['command']}` builds a scratch database whose `ArmUserStat` rollup holds
{d['rows']:,} rows = {d['users']:,} users × their allocation periods (3 periods, 40% of users
in two) for **{d['impressions']:,} impressions** and {d['clicks']:,} clicks on 10 arms
(generated with `INSERT … SELECT generate_series` in {d['generate_s']:.0f} s). {s['postgres']},
default settings, shared 2-core machine (other engineers' tests running): medians after one warm-up.

| step | median | max | runs |
|---|---|---|---|
{rows}

Target ≤ 1 s per tick: the whole tick **{verdict}** it at {tick * 1000:,.0f} ms median. Two levels of
aggregation make that independent of the experiment's size: serving keeps the per-user rollup
`ArmUserStat` in the same transaction as each impression and click, and each tick folds only the
rollup rows that changed since the previous tick (found through a partial index) into running
per-arm × period sums (`ArmEpochSums`), using n'² − n² increments; the report then reads ~30 rows.
Before each timed tick the bench changes {s.get('changed', 1000):,} random rollup rows (a busy second of
serving on this machine: each recommendation or click changes one row), and 5× that for the stress row.
The fold costs ~0.1–0.2 ms per changed row here, so the 1 s budget holds up to a few thousand
changed user rows per second per experiment; past that, tick more often or per arm. The first tick
after migrating folds the whole rollup once: {d['backfill_rows']:,} rows in {d['backfill_s']:.0f} s
(then autovacuum; the bench runs `VACUUM ANALYZE` at that point). The contrast rows show what a tick would cost without the running sums —
one grouped scan of the rollup, plus the per-user scan SRM needs once weights have changed —
and from the raw impression log."""
            + (
                f" It ran over {s['raw']['impressions']:,} impression rows and {s['raw']['clicks']:,} clicks"
                " (secondary indexes dropped for the load; the scan reads the whole table anyway)."
                if s.get("raw")
                else ""
            )
        )
    latency_file = RESULTS / "dashboard_latency.json"
    if latency_file.exists():
        lat = json.loads(latency_file.read_text())
        parts.append(lat["markdown"])
    doc_section_write("Dashboard", "\n\n".join(parts))


if __name__ == "__main__":
    sys.exit(main())
