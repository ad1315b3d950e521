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

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.db import connection

from experiments import features
from experiments.models import Click, Impression, Item, ShopUser
from experiments.services import sessions
from models.errors import BadBatchError
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


# The impression columns a mini-batch learns from, read by both queries below (a new column goes here, into
# step_batch, and onto the click: models.Click and its writers copy it): who, what, where, and the session it
# was ranked with.
IMPRESSION_COLUMNS = ("user_id", "item_id", "position", "hist_clicked", "hist_impressed")

_IMPRESSIONS_SQL = """
SELECT id, {cols} FROM {imp} WHERE arm_id = %s AND id > %s AND id <= %s ORDER BY id LIMIT %s
"""
# A click carries its impression's columns (models.Click): one range of the (arm_id, id) index, no join.
_CLICKS_SQL = """
SELECT id, clicked_at, impression_id, {cols} FROM {click}
WHERE arm_id = %s AND id > %s AND id <= %s AND NOT late ORDER BY id LIMIT %s
"""
_USERS_SQL = "SELECT id, external_id, attributes::text FROM {user} WHERE id = ANY(%s) ORDER BY id"
_ITEMS_SQL = "SELECT id, external_id, category, price, features::text FROM {item} WHERE id = ANY(%s) ORDER BY id"


@dataclass
class Entities:
    """The users and items of one read, each read and featurised once however many rows name them."""

    user_pks: np.ndarray  # sorted
    user_rows: list[tuple[str, dict]]  # (external_id, attributes)
    item_pks: np.ndarray  # sorted
    item_rows: list[tuple[str, str, Any, dict]]  # (external_id, category, price, features)
    _memo: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def _index(self, pks: np.ndarray, have: np.ndarray, what: str) -> np.ndarray:
        idx = np.searchsorted(have, pks)
        if pks.size and (idx.max(initial=0) >= have.size or not np.array_equal(have[np.minimum(idx, have.size - 1)],
                                                                                 pks)):
            raise BadBatchError(f"a {what} of the batch vanished while it was read")
        return idx

    def users(self, pks: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(keys, features [m, dim]) of these user pks."""
        if ("u", dim) not in self._memo:
            self._memo[("u", dim)] = (
                features.external_keys([r[0] for r in self.user_rows]),
                features.user_matrix([r[1] for r in self.user_rows], dim=dim),
            )
        keys, feats = self._memo[("u", dim)]
        idx = self._index(pks, self.user_pks, "user")
        return keys[idx], feats[idx]

    def items(self, pks: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(keys, features [m, dim]) of these item pks."""
        if ("i", dim) not in self._memo:
            self._memo[("i", dim)] = (
                features.external_keys([r[0] for r in self.item_rows]),
                features.item_matrix([r[1:] for r in self.item_rows], dim=dim),
            )
        keys, feats = self._memo[("i", dim)]
        idx = self._index(pks, self.item_pks, "item")
        return keys[idx], feats[idx]


def _no_entities() -> Entities:
    return Entities(np.zeros(0, np.int64), [], np.zeros(0, np.int64), [])


# Columns held as NumPy arrays (the rest stay Python lists: session histories, timestamps).
_INT_COLUMNS = frozenset({"id", "user_id", "item_id", "position", "impression_id"})
_FLOAT_COLUMNS = frozenset({"weight"})


class Rows:
    """Training rows of one read as columns, in id order: the numbers as NumPy arrays, the rest as lists.

    A read of 16,384 rows used to become 16,384 dicts, taken apart again per column for the batch; the
    driver's tuples are transposed once instead (``fetched``), and a mini-batch is a slice of each column.
    """

    __slots__ = ("_cols", "_n")

    def __init__(self, cols: dict[str, np.ndarray | list], n: int) -> None:
        self._cols, self._n = cols, n

    @classmethod
    def fetched(cls, names: Sequence[str], tuples: Sequence[Sequence[Any]]) -> Rows:
        """From the driver's row tuples, whose fields are ``names`` in order.

        One pass per column (``np.fromiter`` for the numbers): ``zip(*tuples)`` would make an iterator per row,
        enough short-lived objects to set off the cyclic garbage collector over the trainer's whole heap
        (2.7 ms a page, but up to 59 ms when it ran, against 2.6 ms steady this way; 16,384 rows).
        """
        n = len(tuples)
        if n and len(tuples[0]) != len(names):
            raise ValueError(f"rows have {len(tuples[0])} fields, not the {len(names)} named")
        cols: dict[str, np.ndarray | list] = {}
        for j, name in enumerate(names):
            if name in _INT_COLUMNS:
                cols[name] = np.fromiter((row[j] for row in tuples), dtype=np.int64, count=n)
            elif name in _FLOAT_COLUMNS:
                cols[name] = np.fromiter((row[j] for row in tuples), dtype=np.float64, count=n)
            else:
                cols[name] = [row[j] for row in tuples]
        return cls(cols, n)

    @classmethod
    def of_records(cls, names: Sequence[str], records: Sequence[dict[str, Any]]) -> Rows:
        return cls.fetched(names, [tuple(r[n] for n in names) for r in records])

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, name: str) -> np.ndarray | list:
        return self._cols[name]

    def get(self, name: str) -> np.ndarray | list | None:
        return self._cols.get(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._cols)

    @property
    def last_id(self) -> int:
        return int(self._cols["id"][-1])

    def sliced(self, start: int, stop: int) -> Rows:
        cols = {k: v[start:stop] for k, v in self._cols.items()}
        return Rows(cols, max(0, min(stop, self._n) - start))

    def followed_by(self, later: Rows) -> Rows:
        if later.names != self.names:
            raise ValueError("rows with different columns cannot be joined")
        cols = {k: (np.concatenate([v, later[k]]) if isinstance(v, np.ndarray) else v + later[k])
                for k, v in self._cols.items()}
        return Rows(cols, self._n + len(later))

    def records(self) -> list[dict[str, Any]]:
        """One dict per row (tests and tools; the training path reads the columns)."""
        vals = [v.tolist() if isinstance(v, np.ndarray) else v for v in self._cols.values()]
        return [dict(zip(self._cols, row, strict=True)) for row in zip(*vals, strict=True)]


@dataclass(frozen=True)
class StepRows:
    impressions: Rows  # trained as (fake) negatives: id + IMPRESSION_COLUMNS
    clicks: Rows  # trained as positives: id, clicked_at, impression_id + IMPRESSION_COLUMNS
    cursor: int  # new impression cursor
    click_cursor: int  # new click cursor
    entities: Entities = field(default_factory=_no_entities)

    @property
    def n(self) -> int:
        return len(self.impressions) + len(self.clicks)

    def chunks(self, size: int) -> list[StepRows]:
        """Consecutive mini-batches of up to ``size`` impressions and ``size`` clicks, each with the
        cursors that mark it as read (the last one ends at this read's cursors)."""
        imps, clicks = self.impressions, self.clicks
        count = max(1, -(-len(imps) // size), -(-len(clicks) // size))
        out = []
        for i in range(count):
            end = (i + 1) * size
            out.append(StepRows(
                imps.sliced(i * size, end),
                clicks.sliced(i * size, end),
                int(imps["id"][end - 1]) if end < len(imps) else self.cursor,
                int(clicks["id"][end - 1]) if end < len(clicks) else self.click_cursor,
                self.entities,
            ))
        return out

    def merged(self, later: StepRows) -> StepRows:
        """This mini-batch followed by ``later``, read as one."""
        return StepRows(self.impressions.followed_by(later.impressions), self.clicks.followed_by(later.clicks),
                        later.cursor, later.click_cursor, self.entities)


def _tables() -> dict[str, str]:
    return {"imp": Impression._meta.db_table, "click": Click._meta.db_table, "user": ShopUser._meta.db_table,
            "item": Item._meta.db_table}


def entities_read(cur, *parts: Rows) -> Entities:
    """Each distinct user and item of the rows read once (two queries on ``cur``)."""
    t = _tables()
    user_pks = np.unique(np.concatenate([p["user_id"] for p in parts] or [np.zeros(0, np.int64)])).tolist()
    item_pks = np.unique(np.concatenate([p["item_id"] for p in parts] or [np.zeros(0, np.int64)])).tolist()
    users, items = [], []
    if user_pks:
        cur.execute(_USERS_SQL.format(**t), [user_pks])
        users = cur.fetchall()
        cur.execute(_ITEMS_SQL.format(**t), [item_pks])
        items = cur.fetchall()
    return Entities(
        np.array([u[0] for u in users], dtype=np.int64),
        [(u[1], json.loads(u[2]) if u[2] else {}) for u in users],
        np.array([i[0] for i in items], dtype=np.int64),
        [(i[1], i[2], i[3], json.loads(i[4]) if i[4] else {}) for i in items],
    )


def step_rows_read(*, arm_id: int, cursor: int, click_cursor: int, horizon: Horizon, limit: int) -> StepRows:
    """The next mini-batch: up to ``limit`` impressions and ``limit`` counted clicks past the cursors.

    Four plain queries (impressions, clicks with their impression's columns, then each
    distinct user and item once), no ORM rows: a user's or item's JSON is decoded once per
    read, not once per row, and the rows stay columns (:class:`Rows`).
    """
    t = _tables()
    cols = ", ".join(IMPRESSION_COLUMNS)
    with connection.cursor() as cur:
        cur.execute(_IMPRESSIONS_SQL.format(cols=cols, **t), [arm_id, cursor, horizon.impression_id, limit])
        imps = Rows.fetched(("id", *IMPRESSION_COLUMNS), cur.fetchall())
        cur.execute(_CLICKS_SQL.format(cols=cols, **t), [arm_id, click_cursor, horizon.click_id, limit])
        clicks = Rows.fetched(("id", "clicked_at", "impression_id", *IMPRESSION_COLUMNS), cur.fetchall())
        entities = entities_read(cur, imps, clicks)
    # A full page may stop short of the horizon; otherwise every id up to it is final and read.
    new_cursor = imps.last_id if len(imps) == limit else max(cursor, horizon.impression_id)
    new_click_cursor = clicks.last_id if len(clicks) == limit else max(click_cursor, horizon.click_id)
    return StepRows(imps, clicks, new_cursor, new_click_cursor, entities)


def step_batch(*, rows: StepRows, params: dict[str, Any]) -> Batch:
    """The FNW mini-batch: every new impression as a negative, every new click as a positive.

    Features go through :mod:`experiments.features`, the same code serving ranks with.
    """
    imps, clicks = rows.impressions, rows.clicks

    def both(name: str) -> np.ndarray | list:
        a, b = imps[name], clicks[name]
        return np.concatenate([a, b]) if isinstance(a, np.ndarray) else a + b

    user_dim = int(params.get("user_dim", 8))
    item_dim = int(params.get("item_dim", 16))
    history_len = sessions.HISTORY_LEN
    labels = np.concatenate([np.zeros(len(imps)), np.ones(len(clicks))]).astype(np.float32)
    user_keys, user_feats = rows.entities.users(both("user_id"), user_dim)
    item_keys, item_feats = rows.entities.items(both("item_id"), item_dim)
    # The session each row was ranked with (null for arms that ignore it), as item keys.
    hist_clicked, hist_impressed = both("hist_clicked"), both("hist_impressed")
    ids = {i for part in (*hist_clicked, *hist_impressed) if part for i in part}
    clicked, impressed = (sessions.history_matrix(list(zip(hist_clicked, hist_impressed, strict=True)),
                                                  sessions.item_keys_of(ids)) if ids else (None, None))
    # Shadow arms' rows carry an importance weight (services/shadow_training.py); the FNW weights multiply it.
    sample_weight = None if imps.get("weight") is None else both("weight").astype(np.float32)
    return Batch.make(
        sample_weight=sample_weight,
        user_keys=user_keys,
        user_feats=user_feats,
        item_keys=item_keys,
        item_feats=item_feats,
        labels=labels,
        position=both("position"),
        clicked=clicked,
        impressed=impressed,
        history_len=history_len,
    )
