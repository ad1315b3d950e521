"""Bulk upserts of the catalogue and of shop users, keyed by external id.

A row replaces every field it is given and resets the ones it omits to their
defaults (``active`` defaults to true), so a POST of an item is the whole item.
Each call is one statement over ``unnest`` arrays inside one transaction:
10,000 rows take a single round trip, and either all rows are written or none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import connection, transaction

from experiments.serving.versions import serving_config_notify


@dataclass(frozen=True)
class ItemRow:
    external_id: str
    title: str = ""
    category: str = ""
    price: Decimal | None = None
    features: dict[str, Any] = field(default_factory=dict)
    active: bool = True


@dataclass(frozen=True)
class UserRow:
    external_id: str
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class UpsertResult:
    created: int
    updated: int

    def as_dict(self) -> dict[str, int]:
        return {"created": self.created, "updated": self.updated}


_ITEMS_SQL = """
INSERT INTO experiments_item (external_id, title, category, price, features, active, created_at, updated_at)
SELECT t.external_id, t.title, t.category, t.price, t.features::jsonb, t.active, now(), now()
FROM unnest(%s::text[], %s::text[], %s::text[], %s::numeric[], %s::text[], %s::bool[])
     AS t(external_id, title, category, price, features, active)
ON CONFLICT (external_id) DO UPDATE SET
    title = EXCLUDED.title, category = EXCLUDED.category, price = EXCLUDED.price,
    features = EXCLUDED.features, active = EXCLUDED.active, updated_at = now()
RETURNING (xmax = 0)
"""

_USERS_SQL = """
INSERT INTO experiments_shopuser (external_id, attributes, created_at)
SELECT t.external_id, t.attributes::jsonb, now()
FROM unnest(%s::text[], %s::text[]) AS t(external_id, attributes)
ON CONFLICT (external_id) DO UPDATE SET attributes = EXCLUDED.attributes
RETURNING (xmax = 0)
"""


def _counts(flags: list[tuple[bool]]) -> UpsertResult:
    created = sum(1 for (inserted,) in flags if inserted)
    return UpsertResult(created=created, updated=len(flags) - created)


def item_bulk_upsert(*, rows: list[ItemRow]) -> UpsertResult:
    """Create or replace items; external ids must be unique within ``rows``."""
    if not rows:
        return UpsertResult(0, 0)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            _ITEMS_SQL,
            [
                [r.external_id for r in rows],
                [r.title for r in rows],
                [r.category for r in rows],
                [r.price for r in rows],
                [json.dumps(r.features) for r in rows],
                [r.active for r in rows],
            ],
        )
        transaction.on_commit(lambda: serving_config_notify(what="catalogue"))
        return _counts(cursor.fetchall())


def user_bulk_upsert(*, rows: list[UserRow]) -> UpsertResult:
    """Create users or replace their attributes; external ids must be unique within ``rows``."""
    if not rows:
        return UpsertResult(0, 0)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_USERS_SQL, [[r.external_id for r in rows], [json.dumps(r.attributes) for r in rows]])
        return _counts(cursor.fetchall())
