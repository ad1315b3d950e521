"""The impression log's day partitions (migration 0011): create ahead, drop past the retention.

Impressions are range-partitioned by ``served_at`` on UTC days (``experiments_impression_YYYYMMDD``), with a
DEFAULT partition for anything outside the created days. Beat runs :func:`impression_partitions_maintain`
hourly (queue ``default``): it creates today's and the next ``days_ahead`` partitions, so serving's rows never
land in the default one, and drops every day partition that ended more than ``RECSITE_IMPRESSION_RETENTION_DAYS``
ago — a ``DROP TABLE`` of the partition, which costs the same for 10 rows and for 10 million
(``bench/bench_partitions.py``). The clicks of a dropped day (``experiments_click`` has no database foreign key to
a partitioned table) are removed right after, in batches, outside the drop.

The rollup (``ArmUserStat``) and the checkpoints' cursors are not touched: the dashboard's numbers and the models
keep what they learnt from the dropped days.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.db import DatabaseError, connection, transaction

log = logging.getLogger(__name__)

PREFIX = "experiments_impression_"

_PARTITIONS_SQL = """
SELECT c.relname, pg_get_expr(c.relpartbound, c.oid)
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'experiments_impression'::regclass
ORDER BY c.relname
"""

# Clicks whose impression is gone (its partition dropped), within the id span the dropped partition held.
# Shadow arms' rows of the dropped impressions go with them (experiments/shadow_models.py): a row's first
# impression is the request's first.
_ORPHAN_SHADOW_SQL = """
DELETE FROM experiments_shadowranking WHERE id IN (
    SELECT s.id FROM experiments_shadowranking s
    WHERE s.created_at < %s::date + 2 AND s.impression_ids[1] BETWEEN %s AND %s
      AND NOT EXISTS (SELECT 1 FROM experiments_impression i WHERE i.id = s.impression_ids[1])
    LIMIT %s)
"""
_ORPHAN_CLICKS_SQL = """
DELETE FROM experiments_click WHERE id IN (
    SELECT c.id FROM experiments_click c
    WHERE c.impression_id BETWEEN %s AND %s
      AND NOT EXISTS (SELECT 1 FROM experiments_impression i WHERE i.id = c.impression_id)
    LIMIT %s)
"""


@dataclass(frozen=True)
class Dropped:
    day: date
    seconds: float  # the DROP TABLE itself
    clicks_deleted: int
    seconds_clicks: float  # the clicks' clean-up after it


def impression_partition_days() -> list[date]:
    """The days that have a partition, oldest first (the DEFAULT partition is not a day)."""
    with connection.cursor() as cursor:
        cursor.execute(_PARTITIONS_SQL)
        names = [row[0] for row in cursor.fetchall()]
    return sorted(datetime.strptime(n[len(PREFIX):], "%Y%m%d").date() for n in names
                  if n[len(PREFIX):].isdigit() and len(n) == len(PREFIX) + 8)


def impression_partition_ensure(*, day: date) -> bool:
    """Creates ``day``'s partition if missing; False (logged) when the DEFAULT partition already holds rows of it."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT experiments_impression_partition(%s)", [day])
    except DatabaseError as exc:
        # Rows of that day are in the DEFAULT partition (e.g. an old import): they stay there, still served to
        # every query; move them with a DETACH/INSERT in a maintenance window to make the day droppable.
        log.warning("impression_partition_blocked day=%s error=%s", day.isoformat(), type(exc).__name__)
        return False
    return True


def impression_partition_drop(*, day: date, click_batch: int = 50_000) -> Dropped:
    """Drops ``day``'s partition (all its impressions at once), then deletes that day's clicks in batches."""
    name = f"{PREFIX}{day:%Y%m%d}"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f'SELECT min(id), max(id) FROM "{name}"')  # name built from a date, never from input
        lo, hi = cursor.fetchone()
        # A caller's transaction may hold deferred foreign-key checks on the partition's rows: run them first.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        started = time.perf_counter()
        cursor.execute(f'DROP TABLE "{name}"')
        seconds = time.perf_counter() - started
    deleted = 0
    started = time.perf_counter()
    if lo is not None:
        for sql, args in ((_ORPHAN_SHADOW_SQL, [day, lo, hi, click_batch]), (_ORPHAN_CLICKS_SQL, [lo, hi, click_batch])):
            while True:
                with transaction.atomic(), connection.cursor() as cursor:
                    cursor.execute(sql, args)
                    batch = cursor.rowcount
                if sql is _ORPHAN_CLICKS_SQL:
                    deleted += batch
                if batch < click_batch:
                    break
    seconds_clicks = time.perf_counter() - started
    log.info("impression_partition_dropped day=%s seconds=%.3f clicks_deleted=%s clicks_seconds=%.3f", day.isoformat(),
             seconds, deleted, seconds_clicks)
    return Dropped(day, seconds, deleted, seconds_clicks)


def impression_partitions_maintain(*, keep_days: int, days_ahead: int = 7, today: date | None = None) -> dict:
    """Creates today's and the next ``days_ahead`` partitions; drops days older than ``keep_days`` (0 = keep all)."""
    today = today or datetime.now(UTC).date()
    created = [today + timedelta(days=d) for d in range(days_ahead + 1)]
    existing = set(impression_partition_days())
    made = [d for d in created if d not in existing and impression_partition_ensure(day=d)]
    dropped: list[Dropped] = []
    if keep_days > 0:
        cutoff = today - timedelta(days=keep_days)
        dropped = [impression_partition_drop(day=d) for d in sorted(existing) if d < cutoff]
    return {"created": [d.isoformat() for d in made], "dropped": [d.day.isoformat() for d in dropped]}
