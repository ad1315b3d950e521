"""Record a business event (view, add to cart, purchase) once, attribute it to the arm that served the user, count it.

Attribution (docs/serving.md, "Business events"). An impression *covers* an event at ``ts`` when
``served_at - EVENT_CLOCK_SKEW_S <= ts <= served_at + ATTRIBUTION_WINDOW_S``.

* With ``impression_id``: that impression's experiment, arm and epoch; ``late`` when it does not cover the event
  (stored, not counted), exactly as a click past the window.
* Without: in every **running A/B** experiment, the user's **latest** impression that covers the event. Its arm is
  the arm that served the user when the event happened (the sticky Assignment at that serve: a later move or
  promotion does not rewrite what the user was shown), and its epoch is the allocation period whose rollup row the
  serve created, so the event lands next to the user's impressions. One index range scan
  (``impression_user_served``, at most two day partitions). Interleaved experiments have no per-user arm: there an
  event counts only through the impression it names. No covering impression: stored, attributed to nothing.

One transaction: the event row, its attribution rows and the ``ArmUserOutcome`` rollup (counted attributions
only), so a reader never sees one without the other. Idempotent on ``event_id``: a retry returns the stored event
(200); the same ``event_id`` with a different body is a 409. SQL texts are constants; values are parameters.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from experiments.errors import ApplicationError
from experiments.services.impression_ids import impression_id_decode, impression_id_encode

log = logging.getLogger(__name__)

# What each type adds to the rollup: (views, carts, purchases); revenue is a purchase's value.
ROLLUP_COUNTS = {"view": (1, 0, 0), "add_to_cart": (0, 1, 0), "purchase": (0, 0, 1)}

_USER_SQL = """
INSERT INTO experiments_shopuser (external_id, attributes, created_at) VALUES (%s, '{}'::jsonb, now())
ON CONFLICT (external_id) DO UPDATE SET attributes = experiments_shopuser.attributes
RETURNING id
"""

_IMPRESSION_SQL = """
SELECT i.experiment_id, i.arm_id, i.epoch, i.served_at, u.external_id
FROM experiments_impression i JOIN experiments_shopuser u ON u.id = i.user_id WHERE i.id = %s
"""

# The latest covering impression per running A/B experiment (DISTINCT ON keeps the first row of each experiment).
_COVERING_SQL = """
SELECT DISTINCT ON (i.experiment_id) i.experiment_id, i.arm_id, i.epoch, i.id
FROM experiments_impression i JOIN experiments_experiment e ON e.id = i.experiment_id
WHERE i.user_id = %(user_id)s
  AND i.served_at >= %(ts)s - make_interval(secs => %(window)s)
  AND i.served_at <= %(ts)s + make_interval(secs => %(skew)s)
  AND e.status = 'running' AND e.mode = 'ab'
ORDER BY i.experiment_id, i.served_at DESC, i.id DESC
"""

_INSERT_SQL = """
INSERT INTO experiments_businessevent (user_id, type, item_id, value, impression_id, event_id, ts, received_at)
VALUES (%(user_id)s, %(type)s, %(item_id)s, %(value)s, %(impression_id)s, %(event_id)s, %(ts)s, now())
ON CONFLICT (event_id) DO NOTHING
RETURNING id
"""

_ATTRIBUTE_SQL = """
INSERT INTO experiments_eventattribution (event_id, experiment_id, arm_id, epoch, impression_id, late)
VALUES (%s, %s, %s, %s, %s, %s)
"""

_ROLLUP_SQL = """
INSERT INTO experiments_armuseroutcome (arm_id, user_id, epoch, views, carts, purchases, revenue)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (arm_id, user_id, epoch) DO UPDATE SET
    views = experiments_armuseroutcome.views + EXCLUDED.views,
    carts = experiments_armuseroutcome.carts + EXCLUDED.carts,
    purchases = experiments_armuseroutcome.purchases + EXCLUDED.purchases,
    revenue = experiments_armuseroutcome.revenue + EXCLUDED.revenue
"""

_STORED_SQL = """
SELECT ev.id, u.external_id, ev.type, it.external_id, ev.value, ev.impression_id, ev.ts, ev.event_id
FROM experiments_businessevent ev JOIN experiments_shopuser u ON u.id = ev.user_id
LEFT JOIN experiments_item it ON it.id = ev.item_id
WHERE ev.event_id = %s
"""

_ATTRIBUTIONS_SQL = """
SELECT e.slug, a.name, t.epoch, t.late FROM experiments_eventattribution t
JOIN experiments_experiment e ON e.id = t.experiment_id JOIN experiments_arm a ON a.id = t.arm_id
WHERE t.event_id = %s ORDER BY e.slug
"""


class UnknownImpression(Exception):
    pass


@dataclass(frozen=True)
class Attribution:
    experiment: str
    arm: str
    epoch: int
    late: bool

    def as_dict(self) -> dict[str, Any]:
        return {"experiment": self.experiment, "arm": self.arm, "epoch": self.epoch, "late": self.late,
                "counted": not self.late}


@dataclass(frozen=True)
class BusinessEventResult:
    event_id: str | None
    created: bool
    user_id: str
    type: str
    item_id: str | None
    value: Decimal | None
    impression_id: str | None  # opaque, as the client sent it
    ts: datetime
    attributions: tuple[Attribution, ...]

    @property
    def counted(self) -> bool:
        return any(not a.late for a in self.attributions)

    @property
    def late(self) -> bool:
        return any(a.late for a in self.attributions)

    def as_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "created": self.created,
            "user_id": self.user_id,
            "type": self.type,
            "item_id": self.item_id,
            "value": None if self.value is None else float(self.value),
            "impression_id": self.impression_id,
            "ts": self.ts.isoformat(),
            "counted": self.counted,
            "late": self.late,
            "attributions": [a.as_dict() for a in self.attributions],
        }


def event_ts_check(ts: datetime | None, *, now: datetime) -> None:
    """Refuses an event time ahead of the clock (beyond the skew allowance) or older than ``EVENT_MAX_AGE_S``."""
    if ts is None:
        return
    skew = float(settings.RECSITE["EVENT_CLOCK_SKEW_S"])
    max_age = float(settings.RECSITE["EVENT_MAX_AGE_S"])
    if ts > now + timedelta(seconds=skew):
        raise ApplicationError("ts_in_future", f"ts is more than {skew:g} s ahead of the server's clock", field="ts")
    if ts < now - timedelta(seconds=max_age):
        raise ApplicationError("ts_too_old", f"ts is more than {max_age:g} s in the past; import history with "
                               "manage.py import_events", field="ts")


def covers(*, served_at: datetime, ts: datetime, window_s: float, skew_s: float) -> bool:
    """Whether an impression served at ``served_at`` can have led to an event at ``ts``."""
    return served_at - timedelta(seconds=skew_s) <= ts <= served_at + timedelta(seconds=window_s)


def _stored(cursor, *, event_id: str, impression_id: str | None) -> tuple[int, BusinessEventResult] | None:
    cursor.execute(_STORED_SQL, [event_id])
    row = cursor.fetchone()
    if row is None:
        return None
    pk, user, type_, item, value, impression_pk, ts, stored_event_id = row
    cursor.execute(_ATTRIBUTIONS_SQL, [pk])
    attributions = tuple(Attribution(slug, arm, epoch, late) for slug, arm, epoch, late in cursor.fetchall())
    # Echo the id the client sent (a retry sends the same); a stored event read back gets it re-encoded.
    opaque = None if impression_pk is None else (impression_id or impression_id_encode(impression_pk))
    return impression_pk, BusinessEventResult(stored_event_id, False, user, type_, item, value, opaque, ts,
                                              attributions)


def _same_event(stored: BusinessEventResult, stored_impression: int | None, *, user_id: str, type_: str,
                item_id: str | None, value: Decimal | None, impression_pk: int | None, ts: datetime | None) -> bool:
    return (stored.user_id, stored.type, stored.item_id, stored.value, stored_impression) == (
        user_id, type_, item_id, value, impression_pk) and (ts is None or ts == stored.ts)


def _replay(cursor, *, event_id: str, impression_id: str | None, **body: Any) -> BusinessEventResult | None:
    """The stored event of a retry; 409 when the event_id was used for a different event."""
    found = _stored(cursor, event_id=event_id, impression_id=impression_id)
    if found is None:
        return None
    stored_impression, stored = found
    if not _same_event(stored, stored_impression, **body):
        raise ApplicationError("event_id_conflict", "this event_id was already used for a different event",
                               status=409, field="event_id")
    return stored


def _attributions(cursor, *, user_pk: int, user_id: str, impression_pk: int | None, ts: datetime
                  ) -> list[tuple[int, int, int, int, bool]]:
    """(experiment id, arm id, epoch, impression id, late) of every experiment the event counts for."""
    window = float(settings.RECSITE["ATTRIBUTION_WINDOW_S"])
    skew = float(settings.RECSITE["EVENT_CLOCK_SKEW_S"])
    if impression_pk is not None:
        cursor.execute(_IMPRESSION_SQL, [impression_pk])
        row = cursor.fetchone()
        # Another user's impression answers like a missing one: an id says nothing about who was shown it.
        if row is None or row[4] != user_id:
            raise UnknownImpression(impression_pk)
        experiment_id, arm_id, epoch, served_at, _ = row
        late = not covers(served_at=served_at, ts=ts, window_s=window, skew_s=skew)
        return [(experiment_id, arm_id, epoch, impression_pk, late)]
    cursor.execute(_COVERING_SQL, {"user_id": user_pk, "ts": ts, "window": window, "skew": skew})
    return [(experiment_id, arm_id, epoch, imp, False) for experiment_id, arm_id, epoch, imp in cursor.fetchall()]


def business_event_record(*, user_id: str, event_type: str, item_id: str | None = None, value: Decimal | None = None,
                          impression_id: str | None = None, event_id: str | None = None,
                          ts: datetime | None = None) -> BusinessEventResult:
    """Store one business event, attribute it and add it to the rollup, in one transaction (see the module doc).

    ``impression_id`` is the opaque id a recommendation returned: malformed, forged, unknown or another user's
    raises :class:`UnknownImpression`. An unknown ``item_id`` is a 404; a ``ts`` too far ahead or back a 400.
    """
    if event_type not in ROLLUP_COUNTS:
        raise ApplicationError("unknown_type", f"type must be one of {sorted(ROLLUP_COUNTS)}", field="type")
    now = timezone.now()
    event_ts_check(ts, now=now)
    impression_pk = None
    if impression_id is not None:
        impression_pk = impression_id_decode(impression_id)
        if impression_pk is None:
            raise UnknownImpression(impression_id)
    body = {"user_id": user_id, "type_": event_type, "item_id": item_id, "value": value, "impression_pk": impression_pk,
            "ts": ts}
    with transaction.atomic(), connection.cursor() as cursor:
        if event_id is not None:
            replayed = _replay(cursor, event_id=event_id, impression_id=impression_id, **body)
            if replayed is not None:
                return replayed
        item_pk = None
        if item_id is not None:
            cursor.execute("SELECT id FROM experiments_item WHERE external_id = %s", [item_id])
            found = cursor.fetchone()
            if found is None:
                raise ApplicationError("item_not_found", "no such item in the catalogue", status=404, field="item_id")
            item_pk = found[0]
        cursor.execute(_USER_SQL, [user_id])
        (user_pk,) = cursor.fetchone()
        at = ts or now
        attributed = _attributions(cursor, user_pk=user_pk, user_id=user_id, impression_pk=impression_pk, ts=at)
        cursor.execute(_INSERT_SQL, {"user_id": user_pk, "type": event_type, "item_id": item_pk, "value": value,
                                     "impression_id": impression_pk, "event_id": event_id, "ts": at})
        inserted = cursor.fetchone()
        if inserted is None:
            # A concurrent request with this event_id committed first: the unique index made us wait for it.
            replayed = _replay(cursor, event_id=event_id, impression_id=impression_id, **body)
            if replayed is None:
                raise ApplicationError("conflict", "the event could not be stored; retry", status=409, field="event_id")
            return replayed
        (pk,) = inserted
        views, carts, purchases = ROLLUP_COUNTS[event_type]
        revenue = (value or Decimal(0)) if purchases else Decimal(0)
        for experiment_id, arm_id, epoch, imp, late in attributed:
            cursor.execute(_ATTRIBUTE_SQL, [pk, experiment_id, arm_id, epoch, imp, late])
            if not late:
                cursor.execute(_ROLLUP_SQL, [arm_id, user_pk, epoch, views, carts, purchases, revenue])
        cursor.execute(_ATTRIBUTIONS_SQL, [pk])
        attributions = tuple(Attribution(slug, arm, epoch, late) for slug, arm, epoch, late in cursor.fetchall())
    log.info("business_event type=%s user=%s attributions=%d counted=%d", event_type, user_pk, len(attributions),
             sum(not a.late for a in attributions))
    return BusinessEventResult(event_id, True, user_id, event_type, item_id, value, impression_id, at, attributions)
