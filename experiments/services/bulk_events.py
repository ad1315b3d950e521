"""Bulk import of business events (views, add-to-carts, purchases) with Postgres COPY, all or nothing.

The twin of :mod:`experiments.services.bulk` (impressions and clicks), in the same shape: a CSV (header
row first) is COPYed into a typed staging table; unseen users are created (no attributes) and unseen items
too (inactive, so an import never changes what is served); then, in the same transaction, the events are
inserted, attributed by the rule of ``POST /api/v1/events`` (:mod:`experiments.services.business_events`)
and added to the ``ArmUserOutcome`` rollup. Idempotent on ``event_id``: a row whose ``event_id`` is already
stored (or repeats an earlier row of the file) is skipped, so re-importing a file changes nothing; rows
without one are always inserted. Any bad row fails the whole import.

Columns (header names, any order):

* required: ``user_id`` (external id), ``type`` (``view``, ``add_to_cart``, ``purchase``), ``ts`` (ISO
  timestamp with zone; at most ``EVENT_CLOCK_SKEW_S`` ahead of now, but any age: this is the way in for history);
* optional: ``item_id``, ``value`` (money, ≥ 0, at most two decimals), ``event_id``, and ``request_id`` +
  ``position`` naming the impression that led to the event (the keys of the impressions file: both or neither).

Without an impression the event counts for the arm of the user's latest impression covering ``ts`` in each
experiment that is running A/B *at import time* (the API's rule, evaluated now).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import IO

import psycopg2
from django.conf import settings
from django.db import DataError, IntegrityError, connection, transaction

from experiments.business_models import EVENT_TYPES
from experiments.services.bulk import EventImportError, file_lines, header_columns

log = logging.getLogger(__name__)

REQUIRED = ("user_id", "type", "ts")
OPTIONAL = ("item_id", "value", "event_id", "request_id", "position")

_STAGE_SQL = """
CREATE TEMPORARY TABLE event_stage (
    ev_id bigint NOT NULL DEFAULT nextval(pg_get_serial_sequence('experiments_businessevent', 'id')),
    user_id text, type text, ts timestamptz, item_id text, value numeric, event_id text, request_id uuid,
    position integer
) ON COMMIT DROP
"""

# (what is wrong, how many rows, an example) for every check a row can fail before anything is written.
_CHECKS_SQL = """
SELECT 'an empty required field (user_id, type, ts)', count(*), NULL FROM event_stage
    WHERE user_id IS NULL OR user_id = '' OR type IS NULL OR ts IS NULL
UNION ALL SELECT 'an unknown type', count(*), min(type) FROM event_stage WHERE type <> ALL(%(types)s)
UNION ALL SELECT 'a negative value or more than two decimals', count(*), min(value::text) FROM event_stage
    WHERE value < 0 OR value <> round(value, 2) OR value > 9999999999.99
UNION ALL SELECT 'a ts in the future', count(*), min(ts::text) FROM event_stage
    WHERE ts > now() + make_interval(secs => %(skew)s)
UNION ALL SELECT 'request_id without position or the reverse', count(*), min(request_id::text) FROM event_stage
    WHERE (request_id IS NULL) <> (position IS NULL)
UNION ALL SELECT 'an empty event_id', count(*), NULL FROM event_stage WHERE event_id = ''
"""

_USERS_SQL = """
INSERT INTO experiments_shopuser (external_id, attributes, created_at)
SELECT DISTINCT user_id, '{}'::jsonb, now() FROM event_stage
ON CONFLICT (external_id) DO NOTHING
"""

_ITEMS_SQL = """
INSERT INTO experiments_item (external_id, title, category, features, active, created_at, updated_at)
SELECT DISTINCT item_id, '', '', '{}'::jsonb, false, now(), now() FROM event_stage WHERE item_id IS NOT NULL
ON CONFLICT (external_id) DO NOTHING
"""

_RESOLVED_SQL = """
CREATE TEMPORARY TABLE event_rows ON COMMIT DROP AS
SELECT s.ev_id, u.id AS user_pk, s.type, it.id AS item_pk, s.value, s.event_id, s.ts, s.request_id,
       imp.id AS imp_id, imp.user_id AS imp_user, imp.experiment_id, imp.arm_id, imp.epoch, imp.served_at
FROM event_stage s
JOIN experiments_shopuser u ON u.external_id = s.user_id
LEFT JOIN experiments_item it ON it.external_id = s.item_id
LEFT JOIN experiments_impression imp ON imp.request_id = s.request_id AND imp.position = s.position
"""

_BAD_IMPRESSIONS_SQL = """
SELECT count(*), min(request_id::text) FROM event_rows
WHERE request_id IS NOT NULL AND (imp_id IS NULL OR imp_user <> user_pk)
"""

_EVENTS_SQL = """
INSERT INTO experiments_businessevent (id, user_id, type, item_id, value, impression_id, event_id, ts, received_at)
SELECT ev_id, user_pk, type, item_pk, value, imp_id, event_id, ts, now() FROM event_rows ORDER BY ev_id
ON CONFLICT (event_id) DO NOTHING
"""

# Ids come from the sequence while staging, so a stored event with a staged id is one this import inserted.
_NAMED_SQL = """
INSERT INTO experiments_eventattribution (event_id, experiment_id, arm_id, epoch, impression_id, late)
SELECT r.ev_id, r.experiment_id, r.arm_id, r.epoch, r.imp_id,
       NOT (r.ts >= r.served_at - make_interval(secs => %(skew)s)
            AND r.ts <= r.served_at + make_interval(secs => %(window)s))
FROM event_rows r JOIN experiments_businessevent e ON e.id = r.ev_id
WHERE r.imp_id IS NOT NULL
"""

_COVERED_SQL = """
INSERT INTO experiments_eventattribution (event_id, experiment_id, arm_id, epoch, impression_id, late)
SELECT r.ev_id, c.experiment_id, c.arm_id, c.epoch, c.id, false
FROM event_rows r JOIN experiments_businessevent e ON e.id = r.ev_id
CROSS JOIN LATERAL (
    SELECT DISTINCT ON (i.experiment_id) i.experiment_id, i.arm_id, i.epoch, i.id
    FROM experiments_impression i JOIN experiments_experiment x ON x.id = i.experiment_id
    WHERE i.user_id = r.user_pk
      AND i.served_at >= r.ts - make_interval(secs => %(window)s)
      AND i.served_at <= r.ts + make_interval(secs => %(skew)s)
      AND x.status = 'running' AND x.mode = 'ab'
    ORDER BY i.experiment_id, i.served_at DESC, i.id DESC
) c
WHERE r.imp_id IS NULL
"""

_ROLLUP_SQL = """
INSERT INTO experiments_armuseroutcome (arm_id, user_id, epoch, views, carts, purchases, revenue)
SELECT t.arm_id, r.user_pk, t.epoch, count(*) FILTER (WHERE r.type = 'view'),
       count(*) FILTER (WHERE r.type = 'add_to_cart'), count(*) FILTER (WHERE r.type = 'purchase'),
       COALESCE(sum(r.value) FILTER (WHERE r.type = 'purchase'), 0)
FROM experiments_eventattribution t JOIN event_rows r ON r.ev_id = t.event_id
WHERE NOT t.late
GROUP BY t.arm_id, r.user_pk, t.epoch
ON CONFLICT (arm_id, user_id, epoch) DO UPDATE SET
    views = experiments_armuseroutcome.views + EXCLUDED.views,
    carts = experiments_armuseroutcome.carts + EXCLUDED.carts,
    purchases = experiments_armuseroutcome.purchases + EXCLUDED.purchases,
    revenue = experiments_armuseroutcome.revenue + EXCLUDED.revenue
"""

_TALLY_SQL = """
SELECT count(*) FILTER (WHERE NOT t.late), count(*) FILTER (WHERE t.late)
FROM experiments_eventattribution t JOIN event_rows r ON r.ev_id = t.event_id
"""


@dataclass(frozen=True)
class BusinessImportResult:
    events: int
    skipped: int  # rows whose event_id was already stored (or repeated in the file)
    attributions: int
    late: int
    new_users: int
    new_items: int
    seconds: float


def columns_check(header_line: str) -> list[str]:
    return header_columns(header_line, required=REQUIRED, optional=OPTIONAL)


def business_events_import(*, stream: IO[bytes], header: str | None = None) -> BusinessImportResult:
    """Imports a CSV of business events in one transaction (``header``: the first line, if already read)."""
    started = time.perf_counter()
    columns = columns_check(header if header is not None else stream.readline().decode("utf-8-sig"))
    window = float(settings.RECSITE["ATTRIBUTION_WINDOW_S"])
    skew = float(settings.RECSITE["EVENT_CLOCK_SKEW_S"])
    # Every name was checked against the fixed allow-list above.
    column_sql = ", ".join(columns)
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS event_stage, event_rows")
            cursor.execute(_STAGE_SQL)
            cursor.cursor.copy_expert(f"COPY event_stage ({column_sql}) FROM STDIN WITH (FORMAT csv)", stream)
            cursor.execute(_CHECKS_SQL, {"types": list(EVENT_TYPES), "skew": skew})
            problems = [(what, n, example) for what, n, example in cursor.fetchall() if n]
            if problems:
                raise EventImportError("; ".join(f"{n} row(s) with {what} (e.g. {example})"
                                                 for what, n, example in problems))
            cursor.execute(_USERS_SQL)
            new_users = cursor.rowcount
            cursor.execute(_ITEMS_SQL)
            new_items = cursor.rowcount
            cursor.execute(_RESOLVED_SQL)
            cursor.execute(_BAD_IMPRESSIONS_SQL)
            bad, example = cursor.fetchone()
            if bad:
                raise EventImportError(f"{bad} row(s) name no impression of their user by request_id and position "
                                       f"(e.g. request {example})")
            cursor.execute("SELECT count(*) FROM event_rows")
            (staged,) = cursor.fetchone()
            cursor.execute(_EVENTS_SQL)
            events = cursor.rowcount
            cursor.execute(_NAMED_SQL, {"window": window, "skew": skew})
            cursor.execute(_COVERED_SQL, {"window": window, "skew": skew})
            cursor.execute(_ROLLUP_SQL)
            cursor.execute(_TALLY_SQL)
            counted, late = cursor.fetchone()
    except (DataError, IntegrityError, psycopg2.DataError, psycopg2.IntegrityError) as exc:
        raise EventImportError(file_lines(str(exc).strip())) from None
    result = BusinessImportResult(events, staged - events, counted + late, late, new_users, new_items,
                                  time.perf_counter() - started)
    log.info("business_events_imported events=%d skipped=%d attributions=%d late=%d new_users=%d seconds=%.3f",
             events, result.skipped, result.attributions, late, new_users, result.seconds)
    return result
