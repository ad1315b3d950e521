"""Retention by partition: how long dropping one day of the impression log takes, by its size.

Fills one day partition of a scratch database with ``--rows`` impressions (default 10 million, the issue's
target: the drop must take < 1 s) and ``--click-rate`` of them clicked, with every index the table carries, then
drops it with the retention service (``experiments.services.partitions.impression_partition_drop``) and reports
the ``DROP TABLE`` itself and the clicks' clean-up separately. The fill is the slow part (minutes for 10 M rows);
it runs with foreign-key triggers off (``session_replication_role = replica``, superuser), the drop with them on.

Run (quiet machine): ``.venv/bin/python bench/bench_partitions.py --rows 10000000``
Check it end to end quickly: ``.venv/bin/python bench/bench_partitions.py --rows 20000 --no-doc``
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving_common import bench_database_create, doc_section_write  # noqa: E402

DB = "recsite_bench_partitions"
DAY = date(2026, 1, 15)

_FILL_SQL = """
INSERT INTO experiments_impression
    (request_id, position, score, propensity, model_version, served_at, arm_id, experiment_id, item_id, user_id, epoch)
SELECT md5(g::text)::uuid, 1 + g %% 10, 0.5, 0.1, 0,
       %(day)s::timestamptz + make_interval(secs => (g %% 86400)::float8),
       %(arm)s, %(experiment)s, %(item0)s + g %% 1000, %(user0)s + g %% 20000, 0
FROM generate_series(%(lo)s, %(hi)s) AS g
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--click-rate", type=float, default=0.03)
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()

    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    bench_database_create(DB)
    from django.db import connection, transaction

    from experiments.models import Arm, Experiment, Item, ShopUser
    from experiments.services.partitions import impression_partition_drop, impression_partition_ensure

    experiment = Experiment.objects.create(slug="bench", salt="bench", status="running")
    arm = Arm.objects.create(experiment=experiment, name="a", kind="popularity")
    items = Item.objects.bulk_create([Item(external_id=f"item-{i:05d}") for i in range(1000)])
    users = ShopUser.objects.bulk_create([ShopUser(external_id=f"user-{i:06d}") for i in range(20_000)])
    assert impression_partition_ensure(day=DAY)
    started = time.perf_counter()
    chunk = 1_000_000
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        for lo in range(0, args.rows, chunk):
            hi = min(args.rows, lo + chunk) - 1
            with transaction.atomic():
                cursor.execute(_FILL_SQL, {"day": datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC), "arm": arm.id,
                                           "experiment": experiment.id, "item0": items[0].id, "user0": users[0].id,
                                           "lo": lo, "hi": hi})
            print(f"filled {hi + 1:,} rows", flush=True)
        cursor.execute(
            "INSERT INTO experiments_click (impression_id, clicked_at, late, arm_id, served_at, user_id, item_id, position)"
            " SELECT id, served_at, false, arm_id, served_at, user_id, item_id, position"
            f" FROM experiments_impression_{DAY:%Y%m%d} WHERE random() < %s", [args.click_rate])
        cursor.execute("SET session_replication_role = DEFAULT")
        cursor.execute(f"VACUUM ANALYZE experiments_impression_{DAY:%Y%m%d}")
        cursor.execute(f"SELECT pg_total_relation_size('experiments_impression_{DAY:%Y%m%d}'), count(*)"
                       " FROM experiments_click")
        size, clicks = cursor.fetchone()
    fill_s = time.perf_counter() - started
    print(f"partition {DAY}: {args.rows:,} rows, {size / 2**20:,.0f} MiB with indexes, {clicks:,} clicks "
          f"(filled in {fill_s:.0f} s)", flush=True)

    dropped = impression_partition_drop(day=DAY)
    load_after = " ".join(f"{x:.1f}" for x in os.getloadavg())
    line = (f"| {args.rows:,} | {size / 2**20:,.0f} MiB | {dropped.seconds * 1000:,.1f} ms | "
            f"{dropped.clicks_deleted:,} clicks in {dropped.seconds_clicks:,.2f} s | {load_before} → {load_after} |")
    print(line)
    if not args.no_doc:
        doc_section_write("Retention by partition", "\n".join([
            "`bench/bench_partitions.py`: one day partition of the impression log, dropped by the retention service.",
            "The target (issue 15) is < 1 s for a 10 M-row day.", "",
            "| rows | partition + indexes | DROP TABLE | clicks clean-up (batched, after the drop) | load avg |",
            "|---|---|---|---|---|", line]))


if __name__ == "__main__":
    main()
