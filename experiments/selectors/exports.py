"""Reads of the per-user export for notebooks: one row per arm × user × allocation period, with the covariate.

Each row is one cluster of the clustered-ratio statistics (docs/statistics.md §1): the ``ArmUserStat`` rollup
row of that user on that arm in that period. Summing ``(1, n, c, n², c², n·c)`` over an arm's rows gives the six
sums of its ``ClusteredRatioSummary`` exactly as ``selectors.rollups.experiment_stats_inputs`` adds its periods
(a user active in two periods is two clusters), so the dashboard's numbers can be recomputed from the file
(docs/statistics.md §17).

Two pairs of counts per row: ``impressions``/``clicks`` are the rollup now; ``tick_impressions``/``tick_clicks``
are what the stats tick has folded into ``ArmEpochSums``, i.e. what the latest statistics were computed from
(they differ only for traffic since the last tick). Both come from one statement, so they are one snapshot.

The covariate (CUPED's, ``stats.cuped``): the user's impressions and counted clicks *before their first exposure
to this experiment*, from the impression log of every other experiment. First exposure is the earlier of the
user's first impression in this experiment and their assignment's time (the assignment survives the retention of
old impression partitions; it is rewritten when a paused arm's users move, and then the first impression is the
earlier). A pre-exposure click counts only if it was not late and came before the first exposure, so nothing the
experiment could have caused enters the covariate. New users, and rows without any logged exposure, get 0 and 0.
History older than the impression log's retention is not seen.
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import datetime
from typing import Any

from django.db import connection, transaction

from experiments.models import Arm, Experiment

# (name, Arrow type name) in file order; docs/statistics.md §17 describes each.
USER_EXPORT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("arm", "string"),
    ("user_id", "string"),
    ("epoch", "int32"),
    ("impressions", "int64"),
    ("clicks", "int64"),
    ("tick_impressions", "int64"),
    ("tick_clicks", "int64"),
    ("first_exposure_at", "timestamp"),
    ("pre_impressions", "int64"),
    ("pre_clicks", "int64"),
)
USER_EXPORT_FIELDS = tuple(name for name, _ in USER_EXPORT_COLUMNS)
CHUNK_ROWS = 10_000

# One statement, so the rows, the tick's counts and the covariates are one snapshot. Per user, the first exposure
# is an index probe on impression_user_served (user, served_at) plus the assignment's unique index, and the
# pre-exposure history a range scan of the same index with each impression's click by its unique key: the cost
# follows the experiment's users and their history, never the whole impression log.
_USER_ROWS_SQL = """
WITH stat AS (
    SELECT s.arm_id, s.user_id, s.epoch, s.impressions, s.clicks, s.folded_impressions, s.folded_clicks
      FROM experiments_armuserstat s
     WHERE s.arm_id = ANY(%(arm_ids)s) AND s.impressions > 0
), exposed AS (
    SELECT u.user_id,
           LEAST(
               (SELECT min(i.served_at) FROM experiments_impression i
                 WHERE i.user_id = u.user_id AND i.experiment_id = %(experiment_id)s),
               (SELECT a.assigned_at FROM experiments_assignment a
                 WHERE a.user_id = u.user_id AND a.experiment_id = %(experiment_id)s)
           ) AS first_at
      FROM (SELECT DISTINCT user_id FROM stat) AS u
), pre AS (
    SELECT e.user_id, count(*) AS n0,
           count(*) FILTER (WHERE c.id IS NOT NULL AND NOT c.late AND c.clicked_at < e.first_at) AS c0
      FROM exposed e
      JOIN experiments_impression i ON i.user_id = e.user_id AND i.served_at < e.first_at
      LEFT JOIN experiments_click c ON c.impression_id = i.id
     GROUP BY e.user_id
)
SELECT arm.name, u.external_id, s.epoch, s.impressions, s.clicks, s.folded_impressions, s.folded_clicks,
       e.first_at, COALESCE(p.n0, 0), COALESCE(p.c0, 0)
  FROM stat s
  JOIN experiments_arm arm ON arm.id = s.arm_id
  JOIN experiments_shopuser u ON u.id = s.user_id
  LEFT JOIN exposed e ON e.user_id = s.user_id
  LEFT JOIN pre p ON p.user_id = s.user_id
 ORDER BY s.arm_id, s.user_id, s.epoch
"""

UserRow = tuple[str, str, int, int, int, int, int, datetime | None, int, int]


def experiment_user_row_chunks(*, experiment: Experiment, chunk_rows: int | None = None
                               ) -> Generator[list[UserRow]]:
    """The export's rows (``USER_EXPORT_FIELDS`` order) in chunks of at most ``chunk_rows`` (default
    ``CHUNK_ROWS``), by arm, user (in order of first sight) and period.

    Lazy: the statement runs on the first ``next`` and streams from a server-side cursor inside one transaction
    (a plain cursor where ``DISABLE_SERVER_SIDE_CURSORS`` is set), so memory stays at one chunk whatever the
    experiment's size. Consume it on one thread; close it (or exhaust it) to end the transaction.
    """
    chunk_rows = chunk_rows or CHUNK_ROWS
    arm_ids = list(Arm.objects.filter(experiment=experiment).values_list("id", flat=True))
    if not arm_ids:
        return
    with transaction.atomic(), connection.chunked_cursor() as cur:
        cur.execute(_USER_ROWS_SQL, {"arm_ids": arm_ids, "experiment_id": experiment.id})
        while rows := cur.fetchmany(chunk_rows):
            yield [tuple(row) for row in rows]


def experiment_user_rows(*, experiment: Experiment) -> list[dict[str, Any]]:
    """Every row as a dict: for tests and small experiments; the endpoints stream the chunks instead."""
    return [dict(zip(USER_EXPORT_FIELDS, row, strict=True))
            for chunk in experiment_user_row_chunks(experiment=experiment) for row in chunk]
