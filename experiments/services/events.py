"""The event path: serve a recommendation (writing its impressions) and record a click.

Both writes are single transactions that also keep the ``ArmUserStat`` rollup
current, so the dashboard never scans the event log and never sees an
impression without its count. SQL is parameterised throughout; the statement
texts are constants.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from django.conf import settings
from django.db import IntegrityError, connection, transaction

from experiments import features
from experiments.bounded_cache import BoundedCache, json_tree_bytes
from experiments.errors import ApplicationError
from experiments.services import sessions
from experiments.services.assignment import KEEP, MOVE, NoEligibleArm, arm_sticky, bucket_of
from experiments.services.impression_ids import impression_id_decode, impression_ids_encode
from experiments.serving.assignments import NOT_CACHED, assignment_cache
from experiments.serving.cache import ServedExperiment, ServingState, serving_cache

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedItem:
    item_id: str
    position: int
    score: float
    propensity: float
    impression_id: str  # opaque (services.impression_ids); the row id stays inside the database


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

# One round trip writes the impressions, bumps the rollup and, when needed, the sticky assignment: inserted on
# first sight (a concurrent first sight keeps the row that won), moved only away from the arm the row still names,
# and only while the experiment is still in the period the move was decided in (a resume must move nobody).
_IMPRESSIONS_SQL = """
WITH imp AS (
    INSERT INTO experiments_impression
        (request_id, user_id, item_id, experiment_id, arm_id, position, score, propensity,
         model_version, served_at, epoch, hist_clicked, hist_impressed)
    SELECT %(request_id)s::uuid, %(user_id)s, t.item_id, %(experiment_id)s, %(arm_id)s, t.position,
           t.score, t.propensity, %(model_version)s, now(), %(epoch)s,
           %(hist_clicked)s::bigint[], %(hist_impressed)s::bigint[]
    FROM unnest(%(items)s::bigint[], %(positions)s::int[], %(scores)s::float8[], %(propensities)s::float8[])
         AS t(item_id, position, score, propensity)
    RETURNING id, position
), stat AS (
    INSERT INTO experiments_armuserstat (arm_id, user_id, epoch, impressions, clicks)
    VALUES (%(arm_id)s, %(user_id)s, %(epoch)s, %(n)s, 0)
    ON CONFLICT (arm_id, user_id, epoch)
    DO UPDATE SET impressions = experiments_armuserstat.impressions + EXCLUDED.impressions
), assigned AS (
    INSERT INTO experiments_assignment (user_id, experiment_id, arm_id, bucket, assigned_at)
    SELECT %(user_id)s, %(experiment_id)s, %(arm_id)s, %(bucket)s, now() WHERE %(assign)s
    ON CONFLICT (user_id, experiment_id)
    DO UPDATE SET arm_id = EXCLUDED.arm_id, assigned_at = EXCLUDED.assigned_at
    WHERE experiments_assignment.arm_id = %(moved_from)s
      AND (SELECT e.allocation_epoch FROM experiments_experiment e WHERE e.id = %(experiment_id)s) = %(epoch)s
    RETURNING 1
)""" + sessions.IMPRESSIONS_CTE + """
SELECT id, (SELECT count(*) FROM assigned), (SELECT session_clicked FROM sess), (SELECT session_impressed FROM sess)
FROM imp ORDER BY position
"""

_ASSIGNMENT_SQL = "SELECT arm_id FROM experiments_assignment WHERE user_id = %s AND experiment_id = %s"


def _assignment_settle(*, user_id: str, user_pk: int, experiment: ServedExperiment, write: str, arm_id: int,
                       recorded: int | None, written: bool) -> None:
    """Caches what the Assignment row holds after this request (re-read when a concurrent writer won)."""
    if write == KEEP:
        row_arm = recorded
    elif written:
        row_arm = arm_id
    elif _user_cache_ttl() <= 0:
        log.info("assignment_race experiment=%s user=%s served=%s", experiment.slug, user_pk, arm_id)
        return
    else:
        with connection.cursor() as cursor:
            cursor.execute(_ASSIGNMENT_SQL, [user_pk, experiment.id])
            found = cursor.fetchone()
        row_arm = found[0] if found else None
        log.info("assignment_race experiment=%s user=%s served=%s kept=%s", experiment.slug, user_pk, arm_id, row_arm)
    if _user_cache_ttl() <= 0:
        return
    assignment_cache.put(experiment_id=experiment.id, user_id=user_id, epoch=experiment.allocation_epoch,
                         arm_id=row_arm)


def experiment_resolve(*, state: ServingState, slug: str | None) -> ServedExperiment:
    if slug is not None:
        experiment = state.experiments.get(slug)
        if experiment is None:
            raise ApplicationError("experiment_not_found", f"no running or concluded experiment {slug!r}", status=404, field="experiment")
        return experiment
    experiment = state.default_experiment()
    if experiment is None and state.running_count() > 1:
        raise ApplicationError("experiment_required", "several experiments are running; name one", field="experiment")
    if experiment is None:
        raise ApplicationError("no_running_experiment", "no experiment is running", status=409)
    return experiment


def recommendation_serve(
    *,
    user_id: str,
    k: int,
    experiment_slug: str | None = None,
    user_attributes: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
) -> Recommendation:
    """Assign the user, rank the active catalogue with the arm's loaded model, log the impressions."""
    state = serving_cache.current()
    experiment = experiment_resolve(state=state, slug=experiment_slug)
    row = _user_lookup(user_id, experiment_id=experiment.id, epoch=experiment.allocation_epoch)
    recorded = row.arm_id if row is not None else None
    bucket = bucket_of(salt=experiment.salt, user_id=user_id)
    try:
        arm_id, write = arm_sticky(layout=experiment.layout, salt=experiment.salt, user_id=user_id, bucket=bucket,
                                   recorded=recorded)
    except NoEligibleArm:
        raise ApplicationError("no_active_arm", f"experiment {experiment.slug!r} has no active arm", status=409) from None
    loaded = state.models.get(arm_id)
    if loaded is None and arm_id in state.pending:
        # This process is still building the arm (first request after start-up, a new arm).
        state = serving_cache.model_wait(arm_id)
        loaded = state.models.get(arm_id)
    if loaded is None:
        raise ApplicationError("arm_unavailable", f"arm {experiment.arms[arm_id].name!r} could not be loaded", status=503)
    catalogue = state.catalogue
    if catalogue.n == 0:
        raise ApplicationError("empty_catalogue", "the catalogue has no active items; POST /api/v1/items first")

    # Inline attributes (``"user": {...}``) describe this request only; they are never written (finding: anyone
    # could rewrite any shopper's stored attributes through this open endpoint).
    attributes = user_attributes if user_attributes is not None else (row.attributes if row is not None else {})

    from models.types import Context

    model = loaded.model
    tracked = bool(getattr(model, "uses_session", False))
    session = row.session if row is not None and tracked else sessions.EMPTY
    ctx = Context.make(
        features.external_key(user_id),
        features.user_features(attributes, dim=int(model.params["user_dim"])),
        catalogue.keys,
        catalogue.feats[int(model.params["item_dim"])],
        clicked=sessions.history_keys(session.clicked, catalogue.pks, catalogue.keys) if tracked else None,
        impressed=sessions.history_keys(session.impressed, catalogue.pks, catalogue.keys) if tracked else None,
        history_len=sessions.HISTORY_LEN,
    )
    ranking = model.rank(ctx, min(k, catalogue.n), loaded.rng)
    indices = np.asarray(ranking.indices, dtype=np.int64)
    scores = np.nan_to_num(np.asarray(ranking.scores, dtype=np.float64), nan=0.0, posinf=1e300, neginf=-1e300)
    propensities = np.clip(np.asarray(ranking.propensities, dtype=np.float64), 1e-300, 1.0)
    positions = list(range(1, len(indices) + 1))
    request_id = str(uuid.uuid4())

    params = {
        "request_id": request_id,
        "user_id": row[0] if row is not None else None,
        "experiment_id": experiment.id,
        "arm_id": arm_id,
        "model_version": loaded.version,
        "epoch": experiment.allocation_epoch,
        "items": catalogue.pks[indices].tolist(),
        "positions": positions,
        "scores": scores.tolist(),
        "propensities": propensities.tolist(),
        "n": len(positions),
        "bucket": bucket,
        "assign": write != KEEP,
        "moved_from": recorded if write == MOVE else None,
        **sessions.impression_params(tracked=tracked, session=session),
    }
    impressions_sql = (_ASYNC_COMMIT if settings.RECSITE.get("IMPRESSIONS_ASYNC_COMMIT", True) else "") + _IMPRESSIONS_SQL
    user_created = False
    if row is not None:
        # The common case: one statement, one round trip, atomic on its own.
        try:
            with connection.cursor() as cursor:
                cursor.execute(impressions_sql, params)
                written = cursor.fetchall()
        except IntegrityError:
            _user_forget(user_id)  # the cached user row was deleted meanwhile
            assignment_cache.forget(experiment_id=experiment.id, user_id=user_id)
            raise
    else:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(_USER_CREATE_SQL, [user_id])
            params["user_id"], user_created = cursor.fetchone()
            cursor.execute(impressions_sql, params)
            written = cursor.fetchall()
        _user_forget(user_id)
    impression_ids = [r[0] for r in written]
    if tracked and written and written[0][2] is not None:
        _user_session_refresh(user_id, sessions.Session(tuple(written[0][2]), tuple(written[0][3])))
    _assignment_settle(user_id=user_id, user_pk=params["user_id"], experiment=experiment, write=write, arm_id=arm_id,
                       recorded=recorded, written=bool(written) and written[0][1] > 0)
    items = [
        ServedItem(catalogue.external_ids[i], pos, float(s), float(p), imp)
        for i, pos, s, p, imp in zip(indices.tolist(), positions, scores.tolist(), propensities.tolist(),
                                     impression_ids_encode(impression_ids), strict=True)
    ]
    return Recommendation(request_id, experiment.slug, experiment.arms[arm_id].name, loaded.version, items,
                          bool(user_created))


# ----------------------------------------------------------------------------- clicks

_CLICK_SQL = """
WITH imp AS (
    SELECT id, arm_id, user_id, epoch, served_at, item_id, hist_impressed IS NOT NULL AS tracked
    FROM experiments_impression WHERE id = %(impression_id)s
), ins AS (
    INSERT INTO experiments_click (impression_id, clicked_at, late)
    SELECT id, now(), now() - served_at > make_interval(secs => %(window)s) FROM imp
    ON CONFLICT (impression_id) DO NOTHING
    RETURNING impression_id, late, clicked_at
), counted AS (
    UPDATE experiments_armuserstat s SET clicks = s.clicks + 1
    FROM imp, ins
    WHERE NOT ins.late AND s.arm_id = imp.arm_id AND s.user_id = imp.user_id AND s.epoch = imp.epoch
    RETURNING s.id
)""" + sessions.CLICK_CTE + """
SELECT (SELECT count(*) FROM imp), ins.late, ins.clicked_at, (SELECT count(*) FROM counted),
       sess.external_id, sess.session_clicked, sess.session_impressed
FROM (SELECT 1) AS one LEFT JOIN ins ON true LEFT JOIN sess ON true
"""


@dataclass(frozen=True)
class ClickResult:
    impression_id: str
    created: bool
    late: bool
    clicked_at: Any

    @property
    def counted(self) -> bool:
        return not self.late

    def as_dict(self) -> dict[str, Any]:
        return {
            "impression_id": self.impression_id,
            "created": self.created,
            "counted": self.counted,
            "late": self.late,
            "clicked_at": self.clicked_at.isoformat(),
        }


class UnknownImpression(Exception):
    pass


def click_record(*, impression_id: str) -> ClickResult:
    """Store the click of an impression once; a click past the attribution window is kept as late, not counted.

    ``impression_id`` is the opaque id a recommendation returned; a malformed, forged or unknown one raises
    :class:`UnknownImpression`, all alike.
    """
    pk = impression_id_decode(impression_id)
    if pk is None:
        raise UnknownImpression(impression_id)
    window = float(settings.RECSITE["ATTRIBUTION_WINDOW_S"])
    # One statement: atomic on its own (autocommit), with a synchronous commit.
    with connection.cursor() as cursor:
        cursor.execute(_CLICK_SQL, {"impression_id": pk, "window": window, "history_len": sessions.HISTORY_LEN,
                                    "session_idle": sessions.idle_s()})
        found, late, clicked_at, _counted, session_user, s_clicked, s_impressed = cursor.fetchone()
        if not found:
            raise UnknownImpression(impression_id)
        if session_user is not None:
            _user_session_refresh(session_user, sessions.Session(tuple(s_clicked), tuple(s_impressed)))
        if late is not None:
            return ClickResult(impression_id, True, bool(late), clicked_at)
        cursor.execute("SELECT late, clicked_at FROM experiments_click WHERE impression_id = %s", [pk])
        late, clicked_at = cursor.fetchone()
    return ClickResult(impression_id, False, bool(late), clicked_at)
