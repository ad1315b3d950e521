"""The event path: serve a recommendation (writing its impressions) and record a click.

Both writes are single transactions that also keep the ``ArmUserStat`` rollup
current, so the dashboard never scans the event log and never sees an
impression without its count. SQL is parameterised throughout; the statement
texts are constants.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import numpy as np
from django.db import connection

from experiments.errors import ApplicationError
from experiments.services import sessions
from experiments.services.assignment import KEEP, MOVE, NoEligibleArm, arm_sticky, bucket_of
from experiments.services.impression_ids import impression_ids_encode
from experiments.services.layers import route
from experiments.services.shadow import ShadowJob, shadow_submit
from experiments.services.shoppers import (
    Recommendation,
    ServedItem,
    _user_cache_ttl,
    _user_lookup,
    _user_session_refresh,
    catalogue_served,
    impressions_write,
    model_loaded,
    rank_context,
)
from experiments.serving.assignments import assignment_cache
from experiments.serving.cache import ServedExperiment, ServingState, serving_cache
from experiments.serving.health import Trace
from experiments.serving.snapshot import ServedLayer

log = logging.getLogger(__name__)


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


def _layer_route(state: ServingState, layer: ServedLayer, user_id: str) -> ServedExperiment:
    bucket = bucket_of(salt=layer.salt, user_id=user_id)
    slug = route(starts=layer.starts, ends=layer.ends, owners=layer.experiments, bucket=bucket)
    if slug is None:
        raise ApplicationError("layer_unallocated", f"no serving experiment of layer {layer.slug!r} owns this user's "
                               "bucket: show the shop's default", status=409, field="layer")
    return state.experiments[slug]


def experiment_resolve(*, state: ServingState, slug: str | None, user_id: str, layer: str | None = None
                       ) -> ServedExperiment:
    """The experiment that serves this user: the one named, else the default one; and in a layer (named, or the
    named experiment's), the experiment of the layer that owns the user's bucket."""
    if layer is not None:
        if slug is not None:
            raise ApplicationError("ambiguous", "name a layer or an experiment, not both", field="layer")
        served = state.layers.get(layer)
        if served is None:
            raise ApplicationError("layer_not_found", f"no layer {layer!r} with a serving experiment", status=404,
                                   field="layer")
        return _layer_route(state, served, user_id)
    if slug is not None:
        experiment = state.experiments.get(slug)
        if experiment is None:
            raise ApplicationError("experiment_not_found", f"no running or concluded experiment {slug!r}", status=404, field="experiment")
    else:
        experiment = state.default_experiment()
        if experiment is None:
            # Several running experiments of one layer (and none outside it) are one default: the layer.
            in_layers = {e.layer for e in state.experiments.values() if e.status == "running"}
            if len(in_layers) == 1 and None not in in_layers:
                return _layer_route(state, state.layers[in_layers.pop()], user_id)
        if experiment is None and state.running_count() > 1:
            raise ApplicationError("experiment_required", "several experiments are running; name one", field="experiment")
        if experiment is None:
            raise ApplicationError("no_running_experiment", "no experiment is running", status=409)
    if experiment.layer is not None:
        return _layer_route(state, state.layers[experiment.layer], user_id)
    return experiment


def recommendation_serve(
    *,
    user_id: str,
    k: int,
    experiment_slug: str | None = None,
    layer: str | None = None,
    user_attributes: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
    trace: Trace | None = None,
) -> Recommendation:
    """Assign the user, rank the active catalogue with the arm's loaded model, log the impressions.

    ``trace`` (optional) learns the arm chosen and the items shown, for the serving guardrail metrics
    (``experiments.serving.health``), also when the request fails afterwards."""
    state = serving_cache.current()
    experiment = experiment_resolve(state=state, slug=experiment_slug, user_id=user_id, layer=layer)
    if experiment.mode == "interleaved" and experiment.layout.override is None:
        from experiments.services.interleaved import interleaved_serve

        return interleaved_serve(state=state, experiment=experiment, user_id=user_id, k=k,
                                 user_attributes=user_attributes)
    row = _user_lookup(user_id, experiment_id=experiment.id, epoch=experiment.allocation_epoch)
    recorded = row.arm_id if row is not None else None
    bucket = bucket_of(salt=experiment.salt, user_id=user_id)
    try:
        arm_id, write = arm_sticky(layout=experiment.layout, salt=experiment.salt, user_id=user_id, bucket=bucket,
                                   recorded=recorded)
    except NoEligibleArm:
        raise ApplicationError("no_active_arm", f"experiment {experiment.slug!r} has no active arm", status=409) from None
    if trace is not None:
        trace.experiment_id, trace.arm_id = experiment.id, arm_id
    state, loaded = model_loaded(state, experiment, arm_id)
    state, catalogue = catalogue_served(state)

    # Inline attributes (``"user": {...}``) describe this request only; they are never written (finding: anyone
    # could rewrite any shopper's stored attributes through this open endpoint).
    attributes = user_attributes if user_attributes is not None else (row.attributes if row is not None else {})

    model = loaded.model
    tracked = bool(getattr(model, "uses_session", False))
    session = row.session if row is not None and tracked else sessions.EMPTY
    ctx = rank_context(model=model, user_id=user_id, attributes=attributes, catalogue=catalogue, session=session)
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
    written, user_created = impressions_write(
        sql=_IMPRESSIONS_SQL, params=params, user_id=user_id, known=row is not None,
        on_conflict=lambda: assignment_cache.forget(experiment_id=experiment.id, user_id=user_id),
    )
    impression_ids = [r[0] for r in written]
    if trace is not None:
        trace.items = params["items"]
    if tracked and written and written[0][2] is not None:
        _user_session_refresh(user_id, sessions.Session(tuple(written[0][2]), tuple(written[0][3])))
    _assignment_settle(user_id=user_id, user_pk=params["user_id"], experiment=experiment, write=write, arm_id=arm_id,
                       recorded=recorded, written=bool(written) and written[0][1] > 0)
    shadows = experiment.shadow_arm_ids
    if shadows and written:
        shadow_submit(ShadowJob(
            experiment.id, experiment.slug, shadows, arm_id, request_id, user_id, params["user_id"], attributes,
            row.session if row is not None else sessions.EMPTY, tuple(params["items"]),
            tuple(propensities.tolist()), tuple(impression_ids)))
    items = [
        ServedItem(catalogue.external_ids[i], pos, float(s), float(p), imp)
        for i, pos, s, p, imp in zip(indices.tolist(), positions, scores.tolist(), propensities.tolist(),
                                     impression_ids_encode(impression_ids), strict=True)
    ]
    return Recommendation(request_id, experiment.slug, experiment.arms[arm_id].name, loaded.version, items,
                          bool(user_created))
