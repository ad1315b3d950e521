"""Database side of off-policy evaluation: import the Open Bandit Dataset, evaluate an arm offline.

The management commands ``import_obd`` and ``evaluate_offline`` are thin wrappers
around :func:`obd_import` and :func:`offline_evaluate`. The mathematics lives in
the Django-free modules next to this one (``estimators``, ``reward_model``, ``obd``).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

import numpy as np
from django.db import connection, transaction

from experiments import features
from experiments.models import (
    AllocationEpoch,
    Arm,
    Click,
    Experiment,
    Impression,
    Item,
    ModelCheckpoint,
    ShopUser,
)
from experiments.offline.estimators import ESTIMATORS, PolicyEstimate, effective_sample_size
from experiments.offline.evaluation import evaluate_with_refit
from experiments.offline.obd import POLICIES, OBDLog, load_item_context, load_obd_log

log = logging.getLogger(__name__)

# Arms that only hold imported logs: no model can be built from this kind.
LOGGED_KIND_PREFIX = "logged:"
_REQUEST_NAMESPACE = uuid.UUID("6f0d7c8e-5b0a-4c53-9f38-0b5d0a0f0b6d")
_BATCH = 2000
# Below this many effective rows the bootstrap cannot see the weights' tail.
MIN_EFFECTIVE_SAMPLE_SIZE = 100


class OfflineEvaluationError(Exception):
    """Bad input for an offline evaluation (unknown experiment or arm, no logs); carries the field."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


# ----------------------------------------------------------------------------------------------- import


def obd_item_external_id(*, campaign: str, item_id: int) -> str:
    return f"obd:{campaign}:item:{item_id}"


def obd_user_external_id(*, user_features: Sequence[str]) -> str:
    """OBD has no user ids: the four hashed user features together stand for a user (a cohort)."""
    digest = hashlib.blake2b("|".join(user_features).encode(), digest_size=8).hexdigest()
    return f"obd:user:{digest}"


def obd_request_id(*, campaign: str, policy: str, row_id: int) -> uuid.UUID:
    """Deterministic, so re-importing finds the rows it already wrote."""
    return uuid.uuid5(_REQUEST_NAMESPACE, f"{campaign}/{policy}/{row_id}")


@dataclass(frozen=True)
class ObdImportSummary:
    experiment: str
    items: int
    users: int
    impressions_created: dict[str, int]
    clicks_created: dict[str, int]


_ROLLUP_REBUILD_SQL = """
INSERT INTO experiments_armuserstat (arm_id, user_id, epoch, impressions, clicks)
SELECT i.arm_id, i.user_id, i.epoch, count(*), count(c.impression_id) FILTER (WHERE NOT c.late)
  FROM experiments_impression i
  LEFT JOIN experiments_click c ON c.impression_id = i.id
 WHERE i.arm_id = ANY(%s)
 GROUP BY i.arm_id, i.user_id, i.epoch
"""


def obd_import(
    *,
    campaign: str = "all",
    policies: Sequence[str] = POLICIES,
    slug: str | None = None,
    data_dir: Path | None = None,
) -> ObdImportSummary:
    """Map the Open Bandit Dataset onto users, items and impressions of a draft experiment (idempotent).

    One arm per logging policy (kind ``logged:<policy>``, paused: it can never
    serve). Every OBD row becomes one impression of its own request, keeping the
    logged position (1-based) and propensity; a click becomes a Click at the same
    instant. OBD items are imported inactive, so live serving never shows them.
    The arms' ``ArmUserStat`` rollup is rebuilt from the impressions in the same
    transaction.
    """
    logs = {policy: load_obd_log(policy, campaign, data_dir=data_dir) for policy in policies}
    catalogue = load_item_context(policies[0], campaign, data_dir=data_dir)
    slug = slug or f"obd-{campaign}"

    with transaction.atomic():
        Item.objects.bulk_create(
            [
                Item(
                    external_id=obd_item_external_id(campaign=campaign, item_id=int(item_id)),
                    title=f"OBD {campaign} item {int(item_id)}",
                    category=str(category[0])[:100],
                    features={
                        "obd_item_feature_0": float(numeric),
                        "obd_item_feature_2": str(category[1]),
                        "obd_item_feature_3": str(category[2]),
                    },
                    active=False,
                )
                for item_id, numeric, category in zip(
                    catalogue.item_id, catalogue.numeric, catalogue.categorical, strict=True
                )
            ],
            ignore_conflicts=True,
        )
        item_pk = dict(
            Item.objects.filter(external_id__startswith=f"obd:{campaign}:item:").values_list("external_id", "pk")
        )

        user_rows: dict[str, dict[str, str]] = {}
        for obd_log in logs.values():
            for row in obd_log.user_features:
                user_rows.setdefault(
                    obd_user_external_id(user_features=row),
                    {f"obd_user_feature_{j}": str(value) for j, value in enumerate(row)},
                )
        ShopUser.objects.bulk_create(
            [ShopUser(external_id=external_id, attributes=attrs) for external_id, attrs in user_rows.items()],
            ignore_conflicts=True,
        )
        user_pk = dict(ShopUser.objects.filter(external_id__in=list(user_rows)).values_list("external_id", "pk"))

        experiment, _ = Experiment.objects.get_or_create(
            slug=slug,
            defaults={"name": f"Open Bandit Dataset (ZOZOTOWN), campaign {campaign}", "salt": f"obd-{campaign}"},
        )
        arms = {
            policy: Arm.objects.get_or_create(
                experiment=experiment,
                name=policy,
                defaults={"kind": f"{LOGGED_KIND_PREFIX}{policy}", "status": Arm.Status.PAUSED, "weight": 0.0},
            )[0]
            for policy in policies
        }
        created, clicked = {}, {}
        for policy, obd_log in logs.items():
            created[policy], clicked[policy] = _impressions_import(
                obd_log=obd_log, experiment=experiment, arm=arms[policy], item_pk=item_pk, user_pk=user_pk
            )
        arm_ids = [arm.pk for arm in arms.values()]
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM experiments_armuserstat WHERE arm_id = ANY(%s)", [arm_ids])
            cursor.execute(_ROLLUP_REBUILD_SQL, [arm_ids])
        first = min(obd_log.timestamp.min() for obd_log in logs.values())
        AllocationEpoch.objects.get_or_create(
            experiment=experiment,
            epoch=0,
            defaults={
                "weights": {policy: 1.0 / len(policies) for policy in policies},
                "started_at": first.astype("datetime64[us]").item().replace(tzinfo=UTC),
            },
        )
    log.info("obd_import campaign=%s experiment=%s impressions=%s clicks=%s", campaign, slug, created, clicked)
    return ObdImportSummary(
        experiment=slug, items=len(item_pk), users=len(user_pk), impressions_created=created, clicks_created=clicked
    )


def _impressions_import(
    *, obd_log: OBDLog, experiment: Experiment, arm: Arm, item_pk: dict[str, int], user_pk: dict[str, int]
) -> tuple[int, int]:
    campaign, policy = obd_log.campaign, obd_log.policy
    request_ids = [obd_request_id(campaign=campaign, policy=policy, row_id=int(r)) for r in obd_log.row_id]
    existing = set(Impression.objects.filter(arm=arm).values_list("request_id", flat=True))
    new_rows = [i for i, request_id in enumerate(request_ids) if request_id not in existing]
    impressions, clicks = [], []
    for i in new_rows:
        served_at = obd_log.timestamp[i].astype("datetime64[us]").item().replace(tzinfo=UTC)
        impressions.append(
            Impression(
                request_id=request_ids[i],
                user_id=user_pk[obd_user_external_id(user_features=obd_log.user_features[i])],
                item_id=item_pk[obd_item_external_id(campaign=campaign, item_id=int(obd_log.item_id[i]))],
                experiment=experiment,
                arm=arm,
                position=int(obd_log.position[i]),
                score=0.0,
                propensity=float(obd_log.propensity[i]),
                model_version=0,
                served_at=served_at,
                epoch=0,
            )
        )
    Impression.objects.bulk_create(impressions, batch_size=_BATCH)
    for impression, i in zip(impressions, new_rows, strict=True):
        if obd_log.click[i]:
            clicks.append(Click(impression=impression, clicked_at=impression.served_at))
    Click.objects.bulk_create(clicks, batch_size=_BATCH)
    return len(impressions), len(clicks)


# ------------------------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class OfflineEvaluation:
    experiment: str
    arm: str
    model_version: int
    estimates: list[PolicyEstimate]
    rows: int
    requests: int
    candidates: int
    effective_sample_size: float
    live_impressions: int
    live_clicks: int
    notes: list[str] = field(default_factory=list)

    @property
    def live_ctr(self) -> float | None:
        return self.live_clicks / self.live_impressions if self.live_impressions else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "arm": self.arm,
            "model_version": self.model_version,
            "rows": self.rows,
            "requests": self.requests,
            "candidates": self.candidates,
            "effective_sample_size": self.effective_sample_size,
            "live": {"impressions": self.live_impressions, "clicks": self.live_clicks, "ctr": self.live_ctr},
            "offline_estimate": {
                e.estimator: {"value": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high, "level": e.level}
                for e in self.estimates
            },
            "notes": self.notes,
        }


def _fresh_model(*, kind: str, params: dict[str, Any], seed: int) -> Any:
    """A new, untrained arm of ``kind`` that exists in no experiment yet (nothing is saved)."""
    from experiments.serving.arms import arm_build

    return arm_build(kind=kind, params=params, arm_id=seed)


def _target_model(arm: Arm) -> tuple[Any, int]:
    """The arm's newest checkpoint, or version 0 built from its kind and params."""
    from experiments.serving.arms import arm_build, arm_restore

    if arm.kind.startswith(LOGGED_KIND_PREFIX):
        raise OfflineEvaluationError(f"arm {arm.name!r} only holds imported logs; it has no policy", field="target_arm")
    checkpoint = ModelCheckpoint.objects.filter(arm=arm).order_by("-version").first()
    if checkpoint is not None:
        return arm_restore(kind=arm.kind, state=bytes(checkpoint.state)), checkpoint.version
    return arm_build(kind=arm.kind, params=arm.params, arm_id=arm.pk), 0


_LOG_SQL = """
SELECT i.id, i.request_id, i.user_id, i.item_id, i.position, i.propensity,
       (c.impression_id IS NOT NULL AND NOT c.late) AS clicked
  FROM experiments_impression i
  LEFT JOIN experiments_click c ON c.impression_id = i.id
 WHERE i.experiment_id = %s {arm_filter}
 ORDER BY i.id
"""


def offline_evaluate(
    *,
    experiment_slug: str,
    target_arm: str,
    kind: str | None = None,
    params: dict[str, Any] | None = None,
    estimators: Sequence[str] = ESTIMATORS,
    include_target_traffic: bool = True,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> OfflineEvaluation:
    """Estimate ``target_arm``'s CTR per shown item from the experiment's logged impressions.

    The target's action probabilities come from its newest model (or a fresh one)
    via ``propensity_matrix`` over the items that appear in the logs (the catalogue
    the logging arms chose from), for each request's user as they are now. The
    reward model for DM/DR is the cross-fitted item × position CTR table, refitted in
    every bootstrap replicate.
    """
    unknown = [name for name in estimators if name not in ESTIMATORS]
    if unknown:
        raise OfflineEvaluationError(
            f"unknown estimator(s) {unknown}; choose from {list(ESTIMATORS)}", field="estimators"
        )
    experiment = Experiment.objects.filter(slug=experiment_slug).first()
    if experiment is None:
        raise OfflineEvaluationError(f"no experiment {experiment_slug!r}", field="experiment")
    arm = Arm.objects.filter(experiment=experiment, name=target_arm).first()
    if arm is None and kind is None:
        raise OfflineEvaluationError(
            f"experiment {experiment_slug!r} has no arm {target_arm!r} (give a kind to evaluate a new one)",
            field="target_arm",
        )
    if arm is None:
        try:
            model, version = _fresh_model(kind=kind, params=params or {}, seed=seed), 0
        except (KeyError, ValueError) as exc:
            raise OfflineEvaluationError(f"cannot build a {kind!r} arm: {exc}", field="kind") from exc
    else:
        model, version = _target_model(arm)
    if not callable(getattr(model, "propensity_matrix", None)):
        raise OfflineEvaluationError(
            f"{type(model).__name__} does not expose exact per-(item, slot) probabilities (propensity_matrix)",
            field="target_arm",
        )

    arm_filter = "" if include_target_traffic or arm is None else "AND i.arm_id <> %s"
    query_params = [experiment.pk] if not arm_filter else [experiment.pk, arm.pk]
    with connection.cursor() as cursor:
        cursor.execute(_LOG_SQL.format(arm_filter=arm_filter), query_params)
        rows = cursor.fetchall()
    if not rows:
        raise OfflineEvaluationError(f"experiment {experiment_slug!r} has no logged impressions", field="experiment")
    request_of = np.array([r[1].int % (1 << 62) for r in rows], dtype=np.int64)
    user_of = np.array([r[2] for r in rows], dtype=np.int64)
    item_pk = np.array([r[3] for r in rows], dtype=np.int64)
    position = np.array([r[4] for r in rows], dtype=np.int64)
    propensity = np.array([r[5] for r in rows], dtype=np.float64)
    reward = np.array([1.0 if r[6] else 0.0 for r in rows])

    candidates = np.unique(item_pk)
    item_rows = {
        pk: (external_id, category, price, feats)
        for pk, external_id, category, price, feats in Item.objects.filter(pk__in=candidates.tolist()).values_list(
            "pk", "external_id", "category", "price", "features"
        )
    }
    item_keys = features.external_keys([item_rows[int(pk)][0] for pk in candidates])
    item_feats = features.item_matrix([item_rows[int(pk)][1:] for pk in candidates], dim=int(model.params["item_dim"]))
    item_index = np.searchsorted(candidates, item_pk)
    users = dict(ShopUser.objects.filter(pk__in=np.unique(user_of).tolist()).values_list("pk", "external_id"))
    attributes = dict(ShopUser.objects.filter(pk__in=np.unique(user_of).tolist()).values_list("pk", "attributes"))

    n_slots = int(position.max())
    slot = position - 1
    from models.types import Context

    # One exact slot-probability matrix per user: serving ranks all of a user's requests from the same
    # features, and the model is fixed during the evaluation. Held in memory: users × candidates × slots.
    user_ids, group = np.unique(user_of, return_inverse=True)
    k = min(n_slots, candidates.size)
    policy = np.zeros((user_ids.size, candidates.size, n_slots))
    for g, user in enumerate(user_ids.tolist()):
        ctx = Context.make(
            features.external_key(users[user]),
            features.user_features(attributes[user], dim=int(model.params["user_dim"])),
            item_keys,
            item_feats,
            history_len=int(model.params.get("history_len", 10)),
        )
        policy[g, :, :k] = np.clip(model.propensity_matrix(ctx, k), 0.0, 1.0)
    estimates, feedback = evaluate_with_refit(
        item=item_index,
        slot=slot,
        reward=reward,
        propensity=propensity,
        group=group,
        policy=policy,
        estimators=list(estimators),
        n_bootstrap=n_bootstrap,
        seed=seed,
    )
    ess = effective_sample_size(feedback)
    notes = [
        "the target is scored with each user's current attributes over the items seen in the logs",
        "intervals: percentile bootstrap over impressions, refitting the reward model on every resample",
    ]
    if ess < MIN_EFFECTIVE_SAMPLE_SIZE:
        notes.insert(
            0,
            f"WARNING: effective sample size {ess:.0f} < {MIN_EFFECTIVE_SAMPLE_SIZE}: the target rarely agrees with "
            "the logged actions, so these estimates and intervals are unreliable",
        )
    result = OfflineEvaluation(
        experiment=experiment.slug,
        arm=target_arm,
        model_version=version,
        estimates=estimates,
        rows=len(rows),
        requests=int(np.unique(request_of).size),
        candidates=int(candidates.size),
        effective_sample_size=ess,
        live_impressions=Impression.objects.filter(arm=arm).count() if arm is not None else 0,
        live_clicks=Click.objects.filter(impression__arm=arm, late=False).count() if arm is not None else 0,
        notes=notes,
    )
    log.info(
        "offline_evaluate experiment=%s arm=%s version=%d rows=%d %s",
        experiment.slug,
        target_arm,
        version,
        len(rows),
        " ".join(f"{e.estimator}={e.value:.5f}" for e in estimates),
    )
    return result
