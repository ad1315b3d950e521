"""Bulk import of historical or replayed events with Postgres COPY.

A CSV file (header row first) is streamed by COPY into a temporary staging
table, typed, so Postgres does the parsing; impression ids are drawn from the
impression sequence while staging, so clicks need no join back. Then, in the
same transaction, set-based statements create unseen users (no attributes)
and unseen items (inactive, so imports never change what is served), insert
the impressions and clicks, and add the counts to the ``ArmUserStat`` rollup.
Any bad row fails the whole import: nothing is half-written.

Columns (header names, any order):

* required: ``request_id`` (uuid), ``user_id``, ``item_id`` (external ids),
  ``experiment`` (slug), ``arm`` (name), ``position`` (≥ 1), ``score``,
  ``propensity`` (0 < p ≤ 1), ``served_at`` (ISO timestamp with zone);
* optional: ``model_version`` (default 0), ``clicked_at`` (empty = no click;
  a click after the attribution window is stored late and not counted),
  ``epoch`` (default: the experiment's current allocation epoch).
"""

from __future__ import annotations

import csv
import io
import logging
import re
import time
from dataclasses import dataclass
from typing import IO

import psycopg2
from django.conf import settings
from django.db import DataError, IntegrityError, connection, transaction

log = logging.getLogger(__name__)

REQUIRED = ("request_id", "user_id", "item_id", "experiment", "arm", "position", "score", "propensity", "served_at")
OPTIONAL = ("model_version", "clicked_at", "epoch")

_STAGE_SQL = """
CREATE TEMPORARY TABLE import_stage (
    imp_id bigint NOT NULL DEFAULT nextval(pg_get_serial_sequence('experiments_impression', 'id')),
    request_id uuid, user_id text, item_id text, experiment text, arm text, position integer,
    score double precision, propensity double precision, served_at timestamptz,
    model_version integer NOT NULL DEFAULT 0, clicked_at timestamptz, epoch integer
) ON COMMIT DROP
"""

_UNKNOWN_ARMS_SQL = """
SELECT DISTINCT s.experiment, s.arm FROM import_stage s
LEFT JOIN experiments_experiment e ON e.slug = s.experiment
LEFT JOIN experiments_arm a ON a.experiment_id = e.id AND a.name = s.arm
WHERE a.id IS NULL LIMIT 5
"""

_ARMS_SQL = """
CREATE TEMPORARY TABLE import_arms ON COMMIT DROP AS
SELECT DISTINCT s.experiment, s.arm, e.id AS experiment_id, a.id AS arm_id, e.allocation_epoch
FROM (SELECT DISTINCT experiment, arm FROM import_stage) s
JOIN experiments_experiment e ON e.slug = s.experiment
JOIN experiments_arm a ON a.experiment_id = e.id AND a.name = s.arm
"""

_USERS_SQL = """
INSERT INTO experiments_shopuser (external_id, attributes, created_at)
SELECT DISTINCT user_id, '{}'::jsonb, now() FROM import_stage
ON CONFLICT (external_id) DO NOTHING
"""

_ITEMS_SQL = """
INSERT INTO experiments_item (external_id, title, category, features, active, created_at, updated_at)
SELECT DISTINCT item_id, '', '', '{}'::jsonb, false, now(), now() FROM import_stage
ON CONFLICT (external_id) DO NOTHING
"""

_RESOLVED_SQL = """
CREATE TEMPORARY TABLE import_rows ON COMMIT DROP AS
SELECT s.imp_id, s.request_id, u.id AS user_id, i.id AS item_id, m.experiment_id, m.arm_id, s.position, s.score,
       s.propensity, s.model_version, s.served_at, COALESCE(s.epoch, m.allocation_epoch) AS epoch, s.clicked_at,
       s.clicked_at - s.served_at > make_interval(secs => %s) AS late
FROM import_stage s
JOIN experiments_shopuser u ON u.external_id = s.user_id
JOIN experiments_item i ON i.external_id = s.item_id
JOIN import_arms m ON m.experiment = s.experiment AND m.arm = s.arm
"""

_IMPRESSIONS_SQL = """
INSERT INTO experiments_impression
    (id, request_id, user_id, item_id, experiment_id, arm_id, position, score, propensity, model_version,
     served_at, epoch)
SELECT imp_id, request_id, user_id, item_id, experiment_id, arm_id, position, score, propensity, model_version,
       served_at, epoch
FROM import_rows
"""

_CLICKS_SQL = """
INSERT INTO experiments_click (impression_id, clicked_at, late, arm_id, served_at, user_id, item_id, position)
SELECT imp_id, clicked_at, late, arm_id, served_at, user_id, item_id, position FROM import_rows
WHERE clicked_at IS NOT NULL
"""

_ROLLUP_SQL = """
INSERT INTO experiments_armuserstat (arm_id, user_id, epoch, impressions, clicks)
SELECT arm_id, user_id, epoch, count(*), count(*) FILTER (WHERE clicked_at IS NOT NULL AND NOT late)
FROM import_rows GROUP BY arm_id, user_id, epoch
ON CONFLICT (arm_id, user_id, epoch) DO UPDATE SET
    impressions = experiments_armuserstat.impressions + EXCLUDED.impressions,
    clicks = experiments_armuserstat.clicks + EXCLUDED.clicks
"""


class EventImportError(Exception):
    """The file cannot be imported; nothing was written."""


@dataclass(frozen=True)
class ImportResult:
    impressions: int
    clicks: int
    late_clicks: int
    new_users: int
    new_items: int
    seconds: float

    @property
    def impressions_per_s(self) -> float:
        return self.impressions / self.seconds if self.seconds > 0 else 0.0


def header_columns(header_line: str, *, required=REQUIRED, optional=OPTIONAL) -> list[str]:
    """The header's column names, each known (``required`` all there, the rest from ``optional``) and once."""
    columns = [c.strip() for c in next(csv.reader([header_line]))]
    unknown = sorted(set(columns) - set(required) - set(optional))
    missing = [c for c in required if c not in columns]
    if unknown or missing or len(set(columns)) != len(columns):
        raise EventImportError(
            f"bad header: unknown {unknown}, missing {missing}; expected {list(required)} (+ optional {list(optional)})"
        )
    return columns



def events_import(*, stream: IO[bytes], header: str | None = None) -> ImportResult:
    """Imports a CSV of impressions (and their clicks) in one transaction (``header``: the first line, if read).

    Business events have their own file format: :mod:`experiments.services.bulk_events`.
    """
    started = time.perf_counter()
    columns = header_columns(header if header is not None else stream.readline().decode("utf-8-sig"))
    window = float(settings.RECSITE["ATTRIBUTION_WINDOW_S"])
    # Every name was checked against the fixed allow-list above.
    column_sql = ", ".join(columns)

    try:
        with transaction.atomic(), connection.cursor() as cursor:
            # ON COMMIT DROP is not enough inside an outer transaction (a second import in one test).
            cursor.execute("DROP TABLE IF EXISTS import_stage, import_arms, import_rows")
            cursor.execute(_STAGE_SQL)
            cursor.cursor.copy_expert(f"COPY import_stage ({column_sql}) FROM STDIN WITH (FORMAT csv)", stream)
            cursor.execute(
                "SELECT count(*) FILTER (WHERE request_id IS NULL OR user_id IS NULL OR item_id IS NULL OR "
                "position IS NULL OR score IS NULL OR propensity IS NULL OR served_at IS NULL) FROM import_stage"
            )
            (incomplete,) = cursor.fetchone()
            if incomplete:
                raise EventImportError(f"{incomplete} row(s) have an empty required field")
            cursor.execute(_UNKNOWN_ARMS_SQL)
            unknown = cursor.fetchall()
            if unknown:
                raise EventImportError(f"unknown experiment/arm pairs: {unknown}")
            cursor.execute(_ARMS_SQL)
            cursor.execute(_USERS_SQL)
            new_users = cursor.rowcount
            cursor.execute(_ITEMS_SQL)
            new_items = cursor.rowcount
            cursor.execute(_RESOLVED_SQL, [window])
            fast = _foreign_key_checks_batched(cursor)
            cursor.execute(_IMPRESSIONS_SQL)
            impressions = cursor.rowcount
            cursor.execute(_CLICKS_SQL)
            clicks = cursor.rowcount
            if fast:
                cursor.execute("SET LOCAL session_replication_role = origin")
            cursor.execute("SELECT count(*) FROM import_rows WHERE late")
            (late,) = cursor.fetchone()
            cursor.execute(_ROLLUP_SQL)
    except (DataError, IntegrityError, psycopg2.DataError, psycopg2.IntegrityError) as exc:
        # A malformed value, a broken constraint or a re-imported request: Postgres names the line.
        raise EventImportError(file_lines(str(exc).strip())) from None

    result = ImportResult(impressions, clicks, int(late), new_users, new_items, time.perf_counter() - started)
    log.info(
        "events_imported impressions=%d clicks=%d late=%d new_users=%d new_items=%d seconds=%.3f",
        impressions, clicks, late, new_users, new_items, result.seconds,
    )
    return result


# Every impression row fires four deferred foreign-key checks at commit, each locking its parent row
# FOR KEY SHARE: measured, that was half of an import. The staged rows were resolved by joins on those
# very parents inside this transaction, so the checks cannot fail once the parents are locked: lock
# each *distinct* parent once (a few thousand rows instead of four per impression), then insert
# impressions and clicks with per-row triggers off, as pg_restore --disable-triggers does. Setting
# session_replication_role needs a superuser; without one the import keeps the per-row checks.
_PARENT_LOCKS_SQL = """
SELECT count(*) FROM (
    SELECT 1 FROM experiments_shopuser WHERE id IN (SELECT DISTINCT user_id FROM import_rows) FOR KEY SHARE
) AS u;
SELECT count(*) FROM (
    SELECT 1 FROM experiments_item WHERE id IN (SELECT DISTINCT item_id FROM import_rows) FOR KEY SHARE
) AS i;
SELECT count(*) FROM (
    SELECT 1 FROM experiments_arm WHERE id IN (SELECT DISTINCT arm_id FROM import_rows) FOR KEY SHARE
) AS a;
SELECT count(*) FROM (
    SELECT 1 FROM experiments_experiment WHERE id IN (SELECT DISTINCT experiment_id FROM import_rows) FOR KEY SHARE
) AS e
"""


def _foreign_key_checks_batched(cursor) -> bool:
    cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    row = cursor.fetchone()
    if not (row and row[0]):
        return False
    cursor.execute(_PARENT_LOCKS_SQL)
    cursor.execute("SET LOCAL session_replication_role = replica")
    return True


def file_lines(message: str) -> str:
    """COPY counts lines after the header we consumed: report the file's own line numbers."""
    return re.sub(r"COPY (?:import|event)_stage, line (\d+)", lambda m: f"file line {int(m.group(1)) + 1}", message)


def events_import_text(*, text: str) -> ImportResult:
    """Convenience for tests and small batches."""
    return events_import(stream=io.BytesIO(text.encode("utf-8")))
