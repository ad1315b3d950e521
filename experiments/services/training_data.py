"""What one training step reads: the arm's new impressions and clicks past its cursors, as a Batch.

Cursors are ids, and ids are drawn from sequences *before* the inserting
transaction commits, so a row with a smaller id can become visible after one
with a larger id. A cursor that jumped past such a row would skip it forever.
:func:`safe_horizon` therefore reads each sequence's last drawn value first and
then waits until every transaction that was inserting into the impression or
click table at that moment has ended: every id up to the horizon is then final
(committed or never to appear), and the step may read up to it and move its
cursor there.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import connection

from experiments import features
from experiments.models import Click, Impression
from experiments.services import sessions
from models.types import Batch

log = logging.getLogger(__name__)

_SEQ_SQL = "SELECT last_value FROM {seq}"
_sequences: dict[str, str] = {}


def _sequence(table: str) -> str:
    if table not in _sequences:
        with connection.cursor() as cur:
            cur.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
            _sequences[table] = cur.fetchone()[0]
    return _sequences[table]


@dataclass(frozen=True)
class Horizon:
    impression_id: int
    click_id: int
    waited_s: float


_WRITERS_SQL = """
SELECT DISTINCT virtualtransaction FROM pg_locks
WHERE locktype = 'relation' AND mode = 'RowExclusiveLock' AND granted AND pid <> pg_backend_pid()
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND relation IN (%s::regclass, %s::regclass)
"""

_STILL_WRITING_SQL = """
SELECT DISTINCT virtualtransaction FROM pg_locks
WHERE locktype = 'relation' AND mode = 'RowExclusiveLock' AND relation IN (%s::regclass, %s::regclass)
  AND virtualtransaction = ANY(%s)
"""


def safe_horizon(*, wait_s: float) -> Horizon | None:
    """The highest impression and click ids below which nothing more can appear; None if writers stay in flight.

    A transaction that inserts into a table holds a RowExclusiveLock on it from
    before its first row's id is drawn until it ends. So: read the sequences'
    last values, then list the transactions holding that lock on the impression
    or click table, and wait for exactly those to end.
    """
    imp_table, click_table = Impression._meta.db_table, Click._meta.db_table
    imp_seq, click_seq = _sequence(imp_table), _sequence(click_table)
    started = time.monotonic()
    with connection.cursor() as cur:
        cur.execute(f"SELECT ({_SEQ_SQL.format(seq=imp_seq)}), ({_SEQ_SQL.format(seq=click_seq)})")
        imp_last, click_last = cur.fetchone()
        cur.execute(_WRITERS_SQL, [imp_table, click_table])
        writers = [row[0] for row in cur.fetchall()]
        while writers:
            cur.execute(_STILL_WRITING_SQL, [imp_table, click_table, writers])
            writers = [row[0] for row in cur.fetchall()]
            if not writers:
                break
            if time.monotonic() - started > wait_s:
                log.warning("train_inflight_timeout writers=%d waited_s=%.3f", len(writers), wait_s)
                return None
            time.sleep(0.002)
    return Horizon(int(imp_last or 0), int(click_last or 0), time.monotonic() - started)


_ROW_FIELDS = (
    "position",
    "user__external_id",
    "user__attributes",
    "item__external_id",
    "item__category",
    "item__price",
    "item__features",
    "hist_clicked",
    "hist_impressed",
)


@dataclass(frozen=True)
class StepRows:
    impressions: list[dict[str, Any]]  # trained as (fake) negatives
    clicks: list[dict[str, Any]]  # trained as positives, with their impression's features
    cursor: int  # new impression cursor
    click_cursor: int  # new click cursor

    @property
    def n(self) -> int:
        return len(self.impressions) + len(self.clicks)


def step_rows_read(*, arm_id: int, cursor: int, click_cursor: int, horizon: Horizon, limit: int) -> StepRows:
    """The next mini-batch: up to ``limit`` impressions and ``limit`` counted clicks past the cursors."""
    imps = list(
        Impression.objects.filter(arm_id=arm_id, id__gt=cursor, id__lte=horizon.impression_id)
        .order_by("id")
        .values("id", *_ROW_FIELDS)[:limit]
    )
    clicks = list(
        Click.objects.filter(id__gt=click_cursor, id__lte=horizon.click_id, impression__arm_id=arm_id, late=False)
        .order_by("id")
        .values("id", "clicked_at", "impression_id", *(f"impression__{f}" for f in _ROW_FIELDS))[:limit]
    )
    for c in clicks:
        for f in _ROW_FIELDS:
            c[f] = c.pop(f"impression__{f}")
    # A full page may stop short of the horizon; otherwise every id up to it is final and read.
    new_cursor = imps[-1]["id"] if len(imps) == limit else max(cursor, horizon.impression_id)
    new_click_cursor = clicks[-1]["id"] if len(clicks) == limit else max(click_cursor, horizon.click_id)
    return StepRows(imps, clicks, new_cursor, new_click_cursor)


def step_batch(*, rows: StepRows, params: dict[str, Any]) -> Batch:
    """The FNW mini-batch: every new impression as a negative, every new click as a positive.

    Features go through :mod:`experiments.features`, the same code serving ranks with.
    """
    all_rows = rows.impressions + rows.clicks
    user_dim = int(params.get("user_dim", 8))
    item_dim = int(params.get("item_dim", 16))
    history_len = sessions.HISTORY_LEN
    labels = np.concatenate([np.zeros(len(rows.impressions)), np.ones(len(rows.clicks))]).astype(np.float32)
    # The session each row was ranked with (null for arms that ignore it), as item keys.
    hist = [(r["hist_clicked"], r["hist_impressed"]) for r in all_rows]
    ids = {i for pair in hist for part in pair if part for i in part}
    clicked, impressed = sessions.history_matrix(hist, sessions.item_keys_of(ids)) if ids else (None, None)
    return Batch.make(
        user_keys=features.external_keys([r["user__external_id"] for r in all_rows]),
        user_feats=features.user_matrix([r["user__attributes"] for r in all_rows], dim=user_dim),
        item_keys=features.external_keys([r["item__external_id"] for r in all_rows]),
        item_feats=features.item_matrix(
            [(r["item__category"], r["item__price"], r["item__features"]) for r in all_rows], dim=item_dim
        ),
        labels=labels,
        position=np.array([r["position"] for r in all_rows], dtype=np.int64),
        clicked=clicked,
        impressed=impressed,
        history_len=history_len,
    )
