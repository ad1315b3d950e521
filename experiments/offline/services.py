"""Database side of off-policy evaluation: estimate an arm's CTR from an experiment's logs.

``python manage.py evaluate_offline`` wraps :func:`offline_evaluate` (the Open
Bandit import, ``import_obd``, has its own module: ``obd_import``). The mathematics lives in the Django-free modules next to this one
(``estimators``, ``evaluation``, ``reward_model``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.db import connection

from experiments import features
from experiments.models import (
    Arm,
    Click,
    Experiment,
    Impression,
    Item,
    ModelCheckpoint,
    OfflineEstimate,
    ShopUser,
)
from experiments.offline.estimators import ESTIMATORS, PolicyEstimate, effective_sample_size
from experiments.offline.evaluation import evaluate_with_refit
from experiments.offline.obd_import import LOGGED_KIND_PREFIX

log = logging.getLogger(__name__)

# Below this many effective rows the bootstrap cannot see the weights' tail.
MIN_EFFECTIVE_SAMPLE_SIZE = 100


class OfflineEvaluationError(Exception):
    """Bad input for an offline evaluation (unknown experiment or arm, no logs); carries the field."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


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
    max_weight: float | None = None

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
            "max_weight": self.max_weight,
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
    from experiments.serving.arms import arm_build

    if arm.kind.startswith(LOGGED_KIND_PREFIX):
        raise OfflineEvaluationError(f"arm {arm.name!r} only holds imported logs; it has no policy", field="target_arm")
    from experiments.services.checkpoints import checkpoint_model

    checkpoint = ModelCheckpoint.objects.filter(arm=arm).order_by("-version").values("version").first()
    if checkpoint is not None:
        return checkpoint_model(arm_id=arm.pk, kind=arm.kind, version=checkpoint["version"]), checkpoint["version"]
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
    logging_arms: Sequence[str] | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> OfflineEvaluation:
    """Estimate ``target_arm``'s CTR per shown item from the experiment's logged impressions.

    The target's action probabilities come from its newest model (or a fresh one)
    via ``propensity_matrix`` over the items that appear in the logs (the catalogue
    the logging arms chose from), for each request's user as they are now. The
    reward model for DM/DR is the cross-fitted item × position CTR table, refitted in
    every bootstrap replicate. ``logging_arms`` keeps only those arms' logs (default: every arm's);
    ``progress(fraction, stage)`` hears how far it is (for the dashboard's progress bar).
    """
    report = progress or (lambda fraction, stage: None)
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
    if logging_arms is not None:
        chosen = dict(Arm.objects.filter(experiment=experiment, name__in=list(logging_arms)).values_list("name", "pk"))
        missing = sorted(set(logging_arms) - set(chosen))
        if missing or not chosen:
            raise OfflineEvaluationError(f"experiment {experiment_slug!r} has no logging arm(s) {missing}",
                                         field="logging_arms")
        arm_filter += " AND i.arm_id = ANY(%s)"
        query_params.append(sorted(chosen.values()))
    report(0.02, "reading the logged impressions")
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

    # The candidates are every item the experiment's logs show, whichever arms' logs are used: restricting the logs
    # must not change the target policy.
    with connection.cursor() as cursor:
        cursor.execute("SELECT DISTINCT item_id FROM experiments_impression WHERE experiment_id = %s", [experiment.pk])
        candidates = np.union1d(np.array([r[0] for r in cursor.fetchall()], dtype=np.int64), item_pk)
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
    report(0.05, "scoring the candidate")
    for g, user in enumerate(user_ids.tolist()):
        if g % max(1, user_ids.size // 10) == 0:
            report(0.05 + 0.25 * g / user_ids.size, f"scoring the candidate for user {g + 1} of {user_ids.size}")
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
        progress=lambda done, total: report(0.3 + 0.65 * done / total, f"bootstrap {done} of {total}"),
    )
    ess = effective_sample_size(feedback)
    weights = feedback.target_probability / feedback.propensity
    max_weight = float(weights.max()) if weights.size else 0.0
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
        live_clicks=Click.objects.filter(arm_id=arm.id, late=False).count() if arm is not None else 0,
        notes=notes,
        max_weight=max_weight,
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


# The estimator the dashboard shows when several ran: DR is unbiased with a correct
# propensity whatever the reward model, and has the lowest variance of the unbiased ones.
DISPLAY_PREFERENCE = ("dr", "snips", "ips", "dm")


def estimate_clip(e: PolicyEstimate) -> dict[str, Any]:
    """An estimate as shown: value and interval clipped to [0, 1] (a CTR), with the reason when clipping happened.

    IPS and DR can leave [0, 1] when a few importance weights are huge (DR's correction term is unbounded); no
    policy has such a CTR, so the number is clipped and the raw one kept beside the reason.
    """
    raw = {"value": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high}
    clipped = {k: min(1.0, max(0.0, v)) for k, v in raw.items()}
    reason = ""
    if clipped != raw:
        outside = ", ".join(f"{k} {100 * v:.3f}%" for k, v in raw.items() if v != clipped[k])
        reason = (f"clipped to [0, 1]: {e.estimator.upper()} gave {outside}, which no policy can have (a CTR lies in "
                  "[0, 1]); extreme importance weights push the estimator outside it")
    return {**clipped, "level": e.level, "raw": raw, "clipped": bool(reason), "clip_reason": reason}


def offline_estimate_record(*, evaluation: OfflineEvaluation, kind: str | None = None) -> OfflineEstimate:
    """Stores an evaluation so the dashboard can show it as "offline estimate" beside the live CTR.

    The stored values are clipped to [0, 1] (:func:`estimate_clip`); the raw ones stay in ``result``, and below
    ``MIN_EFFECTIVE_SAMPLE_SIZE`` effective samples ``result["insufficient_overlap"]`` tells the dashboard to show
    no number at all.
    """
    by_name = {e.estimator: e for e in evaluation.estimates}
    shown = next(by_name[name] for name in (*DISPLAY_PREFERENCE, *by_name) if name in by_name)
    shown_clipped = estimate_clip(shown)
    experiment = Experiment.objects.get(slug=evaluation.experiment)
    arm = Arm.objects.filter(experiment=experiment, name=evaluation.arm).first()
    result = evaluation.as_dict()
    result["offline_estimate"] = {e.estimator: estimate_clip(e) for e in evaluation.estimates}
    result["insufficient_overlap"] = evaluation.effective_sample_size < MIN_EFFECTIVE_SAMPLE_SIZE
    result["min_effective_sample_size"] = MIN_EFFECTIVE_SAMPLE_SIZE
    return OfflineEstimate.objects.create(
        experiment=experiment,
        arm=arm,
        arm_name=evaluation.arm,
        kind=arm.kind if arm is not None else (kind or ""),
        model_version=evaluation.model_version,
        estimator=shown.estimator,
        value=shown_clipped["value"],
        ci_low=shown_clipped["ci_low"],
        ci_high=shown_clipped["ci_high"],
        effective_sample_size=evaluation.effective_sample_size,
        rows=evaluation.rows,
        result=result,
    )
