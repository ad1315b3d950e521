"""What both serving modes share: the response shapes, the shopper lookup (with its per-process cache) and the
arm's ranking request. ``events`` serves A/B experiments, ``interleaved`` interleaved ones; both build on this.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NamedTuple

from django.conf import settings
from django.db import IntegrityError, connection, transaction

from experiments import features
from experiments.bounded_cache import BoundedCache, json_tree_bytes
from experiments.services import sessions
from experiments.serving.assignments import NOT_CACHED, assignment_cache


@dataclass(frozen=True)
class ServedItem:
    item_id: str
    position: int
    score: float
    propensity: float
    impression_id: str  # opaque (services.impression_ids); the row id stays inside the database
    arm: str | None = None  # interleaved experiments: the arm (team) that contributed the item


@dataclass(frozen=True)
class Recommendation:
    request_id: str
    experiment: str
    arm: str
    model_version: int
    items: list[ServedItem]
    user_created: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "experiment": self.experiment,
            "arm": self.arm,
            "model_version": self.model_version,
            "items": [
                {
                    "item_id": i.item_id,
                    "position": i.position,
                    "score": i.score,
                    "propensity": i.propensity,
                    "impression_id": i.impression_id,
                    **({} if i.arm is None else {"arm": i.arm}),
                }
                for i in self.items
            ],
        }


# The user, their session and their sticky assignment in this experiment, in one round trip.
_USER_SQL = f"""
SELECT u.id, u.attributes::text, a.arm_id, {sessions.SELECT_COLUMNS} FROM experiments_shopuser u
LEFT JOIN experiments_assignment a ON a.user_id = u.id AND a.experiment_id = %s
WHERE u.external_id = %s
"""

# A user first seen here is created without attributes: attributes are stored only through the keyed
# POST /api/v1/users; inline ones count for their request alone. The no-op update returns the row on a race.
_USER_CREATE_SQL = """
INSERT INTO experiments_shopuser (external_id, attributes, created_at) VALUES (%s, '{}'::jsonb, now())
ON CONFLICT (external_id) DO UPDATE SET attributes = experiments_shopuser.attributes
RETURNING id, (xmax = 0)
"""

# The commit's WAL flush (~5 ms on this disk) dominated a request. An asynchronous commit is still
# atomic and crash-consistent; only a crash of *Postgres itself* may drop the last ~0.6 s of
# impressions (3 × wal_writer_delay). Clicks keep synchronous commits. In autocommit mode the two
# statements run as one implicit transaction, so SET LOCAL applies to exactly this write.
_ASYNC_COMMIT = "SET LOCAL synchronous_commit = off;\n"

# Per-process cache of user id → (pk, attributes): saves a round trip per request for returning
# shoppers. Attribute changes made through other processes show after at most the TTL. Bounded by bytes
# (attributes measured as decoded) and by age, so a stream of distinct users cannot grow it past the budget.
_user_cache = BoundedCache(max_bytes=32 * 1024 * 1024, ttl_s=5.0)


def _user_cache_ttl() -> float:
    if settings.RECSITE.get("SERVING_REFRESH", "background") == "inline":
        return 0.0
    return float(settings.RECSITE.get("USER_CACHE_TTL_S", 5.0))


class UserRow(NamedTuple):
    pk: int
    attributes: dict
    arm_id: int | None  # of the user's Assignment row in this experiment
    session: sessions.Session


def _user_cache_put(user_id: str, pk: int, attributes: dict, session: sessions.Session) -> None:
    _user_cache.max_bytes = int(settings.RECSITE.get("USER_CACHE_MAX_BYTES", 32 * 1024 * 1024))
    size = json_tree_bytes(attributes) + 64 + 16 * (len(session.clicked) + len(session.impressed))
    _user_cache.put(user_id, (pk, attributes, session), size=size, ttl_s=_user_cache_ttl())


def _user_lookup(user_id: str, *, experiment_id: int, epoch: int) -> UserRow | None:
    """The user, their session and their assignment; None for an unknown user."""
    ttl = _user_cache_ttl()
    hit = _user_cache.get(user_id) if ttl > 0 else None
    if hit is not None:
        recorded = assignment_cache.get(experiment_id=experiment_id, user_id=user_id, epoch=epoch)
        if recorded is not NOT_CACHED:
            return UserRow(hit[0], hit[1], recorded, hit[2])
    with connection.cursor() as cursor:
        cursor.execute(_USER_SQL, [sessions.idle_s(), experiment_id, user_id])
        row = cursor.fetchone()
    if row is None:
        return None
    attributes = json.loads(row[1]) if row[1] else {}
    session = sessions.session_of(row[3], row[4], row[5])
    if ttl > 0:
        _user_cache_put(user_id, row[0], attributes, session)
        assignment_cache.put(experiment_id=experiment_id, user_id=user_id, epoch=epoch, arm_id=row[2])
    return UserRow(row[0], attributes, row[2], session)


def _user_session_refresh(user_id: str, session: sessions.Session) -> None:
    """This process wrote the user's session: keep the cached copy equal to what Postgres returned."""
    hit = _user_cache.get(user_id)
    if hit is not None:
        _user_cache_put(user_id, hit[0], hit[1], session)


def _user_forget(user_id: str) -> None:
    _user_cache.pop(user_id)

def rank_context(*, model: Any, user_id: str, attributes: dict, catalogue: Any, session: sessions.Session) -> Any:
    """The arm's ranking request for this user over the catalogue (session keys only for arms that track one)."""
    from models.types import Context

    tracked = bool(getattr(model, "uses_session", False))
    return Context.make(
        features.external_key(user_id),
        features.user_features(attributes, dim=int(model.params["user_dim"])),
        catalogue.keys,
        catalogue.feats[int(model.params["item_dim"])],
        clicked=sessions.history_keys(session.clicked, catalogue.pks, catalogue.keys) if tracked else None,
        impressed=sessions.history_keys(session.impressed, catalogue.pks, catalogue.keys) if tracked else None,
        history_len=sessions.HISTORY_LEN,
    )


def impressions_write(*, sql: str, params: dict[str, Any], user_id: str, known: bool,
                      on_conflict: Any = None) -> tuple[list[tuple], bool]:
    """One request's impressions (A/B or interleaved): ``sql`` (a module constant of the caller) runs as one
    statement, behind the async-commit prefix unless ``IMPRESSIONS_ASYNC_COMMIT`` is off. A new user (``known``
    False) is created first, in one transaction with it. Returns the statement's rows and whether the user was
    created. A known user whose row was deleted meanwhile raises IntegrityError after the caches forget them
    (``on_conflict``: the caller's own cache to forget as well)."""
    sql = (_ASYNC_COMMIT if settings.RECSITE.get("IMPRESSIONS_ASYNC_COMMIT", True) else "") + sql
    if known:
        # The common case: one statement, one round trip, atomic on its own.
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall(), False
        except IntegrityError:
            _user_forget(user_id)  # the cached user row was deleted meanwhile
            if on_conflict is not None:
                on_conflict()
            raise
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_USER_CREATE_SQL, [user_id])
        params["user_id"], created = cursor.fetchone()
        cursor.execute(sql, params)
        written = cursor.fetchall()
    _user_forget(user_id)
    return written, bool(created)


def model_loaded(state: Any, experiment: Any, arm_id: int) -> tuple[Any, Any]:
    """The arm's loaded model in ``state`` (waiting for it while this process still builds it: the first request
    after start-up, a new arm); 503 ``arm_unavailable`` when it could not be loaded. Returns the state it was
    found in and the model."""
    from experiments.errors import ApplicationError
    from experiments.serving.cache import serving_cache

    loaded = state.models.get(arm_id)
    if loaded is None and arm_id in state.pending:
        state = serving_cache.model_wait(arm_id)
        loaded = state.models.get(arm_id)
    if loaded is None:
        raise ApplicationError("arm_unavailable", f"arm {experiment.arms[arm_id].name!r} could not be loaded", status=503)
    return state, loaded


def catalogue_served(state: Any) -> tuple[Any, Any]:
    """The state and catalogue to rank. An empty catalogue is checked against the database first (items posted a
    moment ago may not have reached this process yet: ``ServingCache.catalogue_fresh``), then refused."""
    from experiments.errors import ApplicationError
    from experiments.serving.cache import serving_cache

    if state.catalogue.n == 0:
        state = serving_cache.catalogue_fresh()
    if state.catalogue.n == 0:
        raise ApplicationError("empty_catalogue", "the catalogue has no active items; POST /api/v1/items first")
    return state, state.catalogue
