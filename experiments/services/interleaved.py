"""Serving an interleaved experiment: one team-drafted slate from every serving arm's ranking (issue 17).

A running experiment of mode ``interleaved`` has no per-user arm: each request asks every arm that takes
traffic (active, weight > 0; a weight-0 arm is a candidate and stays out) for its ranking and merges them
by team-draft interleaving, or multileaving with more than two arms (``experiments.stats.interleaving``).
Each impression row names the arm that contributed it (its team), carries that arm's score and model
version, and the exact propensity of the item at its slot under the interleaving mechanism given the
arms' rankings; with a single arm the arm's own propensity. So:

* a click credits the contributing arm (``experiments.services.clicks`` writes ``InterleaveCredit``),
* each arm trains on the impressions it contributed (training reads an arm's impressions by ``arm_id``),
* the rollup counts each arm's contributed impressions, so per-arm CTRs stay on the dashboard.

A concluded (promoted) or stopped interleaved experiment serves its winner or control alone, through
the A/B path (``events.recommendation_serve``): promotion works the same in both modes.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np

from experiments.errors import ApplicationError
from experiments.services import sessions
from experiments.services.impression_ids import impression_ids_encode
from experiments.services.shoppers import (
    Recommendation,
    ServedItem,
    _user_lookup,
    _user_session_refresh,
    catalogue_served,
    impressions_write,
    model_loaded,
    rank_context,
)
from experiments.serving.cache import ServedExperiment, ServingState
from experiments.stats.interleaving import team_draft

# Per-row arm, score, propensity and model version; one rollup row per contributing arm. No Assignment row.
_INTERLEAVED_SQL = """
WITH imp AS (
    INSERT INTO experiments_impression
        (request_id, user_id, item_id, experiment_id, arm_id, position, score, propensity,
         model_version, served_at, epoch, hist_clicked, hist_impressed)
    SELECT %(request_id)s::uuid, %(user_id)s, t.item_id, %(experiment_id)s, t.arm_id, t.position,
           t.score, t.propensity, t.model_version, now(), %(epoch)s,
           %(hist_clicked)s::bigint[], %(hist_impressed)s::bigint[]
    FROM unnest(%(items)s::bigint[], %(arms)s::bigint[], %(positions)s::int[], %(scores)s::float8[],
                %(propensities)s::float8[], %(versions)s::int[])
         AS t(item_id, arm_id, position, score, propensity, model_version)
    RETURNING id, position
), stat AS (
    INSERT INTO experiments_armuserstat (arm_id, user_id, epoch, impressions, clicks)
    SELECT t.arm_id, %(user_id)s, %(epoch)s, t.n, 0 FROM unnest(%(stat_arms)s::bigint[], %(stat_n)s::int[]) AS t(arm_id, n)
    ON CONFLICT (arm_id, user_id, epoch)
    DO UPDATE SET impressions = experiments_armuserstat.impressions + EXCLUDED.impressions
)""" + sessions.IMPRESSIONS_CTE + """
SELECT id, (SELECT session_clicked FROM sess), (SELECT session_impressed FROM sess) FROM imp ORDER BY position
"""


def interleaved_arms(experiment: ServedExperiment) -> list[int]:
    """The arms whose rankings every slate interleaves: those taking traffic, in id order."""
    return list(experiment.layout.arm_ids)


def interleaved_serve(
    *, state: ServingState, experiment: ServedExperiment, user_id: str, k: int,
    user_attributes: dict[str, Any] | None = None,
) -> Recommendation:
    """Rank with every interleaved arm, team-draft one slate, log each impression under its contributing arm."""
    arm_ids = interleaved_arms(experiment)
    if not arm_ids:
        raise ApplicationError("no_active_arm", f"experiment {experiment.slug!r} has no active arm", status=409)
    row = _user_lookup(user_id, experiment_id=experiment.id, epoch=experiment.allocation_epoch)
    loaded = []
    for arm_id in arm_ids:
        state, model = model_loaded(state, experiment, arm_id)
        loaded.append(model)
    state, catalogue = catalogue_served(state)
    attributes = user_attributes if user_attributes is not None else (row.attributes if row is not None else {})
    tracked = any(bool(getattr(m.model, "uses_session", False)) for m in loaded)
    session = row.session if row is not None and tracked else sessions.EMPTY
    k = min(k, catalogue.n)
    # Every item an arm passes over or picks is in the slate (< k items), so its top k always suffice.
    depth = k
    rankings, scores, own_props = [], [], []
    for m in loaded:
        ctx = rank_context(model=m.model, user_id=user_id, attributes=attributes, catalogue=catalogue,
                           session=session if getattr(m.model, "uses_session", False) else sessions.EMPTY)
        ranking = m.model.rank(ctx, depth, m.rng)
        rankings.append(np.asarray(ranking.indices, dtype=np.int64))
        scores.append(dict(zip(rankings[-1].tolist(), np.nan_to_num(
            np.asarray(ranking.scores, dtype=np.float64), nan=0.0, posinf=1e300, neginf=-1e300).tolist(), strict=True)))
        own_props.append(np.asarray(ranking.propensities, dtype=np.float64))
    try:
        slate = team_draft(rankings, k, loaded[0].rng)
    except ValueError as exc:
        raise ApplicationError("interleaving_too_large", f"{exc}; ask for fewer items (k)", field="k") from None
    indices = slate.items.tolist()
    teams = slate.teams.tolist()
    if len(loaded) == 1:  # no interleaving: the arm's own exploration is the whole mechanism
        propensities = own_props[0][: len(indices)].tolist()
    else:
        propensities = slate.propensities.tolist()
    propensities = [min(1.0, max(1e-300, float(p))) for p in propensities]
    served_arms = [arm_ids[t] for t in teams]
    positions = list(range(1, len(indices) + 1))
    stat_arms = sorted(set(served_arms))
    params = {
        "request_id": str(uuid.uuid4()),
        "user_id": row.pk if row is not None else None,
        "experiment_id": experiment.id,
        "epoch": experiment.allocation_epoch,
        "items": catalogue.pks[np.asarray(indices, dtype=np.int64)].tolist(),
        "arms": served_arms,
        "positions": positions,
        "scores": [float(scores[t][i]) for t, i in zip(teams, indices, strict=True)],
        "propensities": propensities,
        "versions": [int(loaded[t].version) for t in teams],
        "stat_arms": stat_arms,
        "stat_n": [served_arms.count(a) for a in stat_arms],
        **sessions.impression_params(tracked=tracked, session=session),
    }
    written, user_created = impressions_write(sql=_INTERLEAVED_SQL, params=params, user_id=user_id,
                                              known=row is not None)
    if tracked and written and written[0][1] is not None:
        _user_session_refresh(user_id, sessions.Session(tuple(written[0][1]), tuple(written[0][2])))
    names = [experiment.arms[a].name for a in served_arms]
    items = [
        ServedItem(catalogue.external_ids[i], pos, s, p, imp, arm=name)
        for i, pos, s, p, imp, name in zip(indices, positions, params["scores"], propensities,
                                           impression_ids_encode([r[0] for r in written]), names, strict=True)
    ]
    label = "+".join(experiment.arms[a].name for a in arm_ids)
    return Recommendation(params["request_id"], experiment.slug, label, max(int(m.version) for m in loaded), items,
                          bool(user_created))
