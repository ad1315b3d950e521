"""Reads for the live statistics: the clustered sums from the ArmUserStat rollup, snapshots, freshness.

The rollup holds one row per (arm, user, allocation epoch), so an experiment with
10 million impressions is a few hundred thousand rows and one grouped query turns
it into the six sufficient statistics per arm and period (docs/statistics.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection
from django.utils import timezone

from experiments.models import AllocationEpoch, Arm, ArmUserStat, Experiment, ModelCheckpoint, StatsSnapshot
from experiments.stats import AllocationPeriod, ClusteredRatioSummary

log = logging.getLogger(__name__)

SUM_FIELDS = ("n_users", "sum_n", "sum_c", "sum_nn", "sum_cc", "sum_nc")
# The dashboard's time axis: at most this many points, one per thinned snapshot.
HISTORY_POINTS = 720


def _table() -> str:
    return ArmUserStat._meta.db_table


def arm_epoch_sums(*, arm_ids: list[int]) -> dict[tuple[int, int], ClusteredRatioSummary]:
    """(arm id, epoch) → the clustered sums of that arm in that allocation period, in one grouped query.

    Squares are taken in bigint (a user with 50 000 impressions squares to 2.5e9,
    past int4), and summed as numeric so no total can overflow.
    """
    if not arm_ids:
        return {}
    sql = f"""
        SELECT arm_id, epoch, count(*),
               sum(impressions), sum(clicks),
               sum(impressions::bigint * impressions), sum(clicks::bigint * clicks),
               sum(impressions::bigint * clicks)
          FROM {_table()}
         WHERE arm_id = ANY(%s) AND impressions > 0
         GROUP BY arm_id, epoch
    """
    with connection.cursor() as cur:
        cur.execute(sql, [list(arm_ids)])
        rows = cur.fetchall()
    return {
        (arm_id, epoch): ClusteredRatioSummary(int(n), float(sn), float(sc), float(snn), float(scc), float(snc))
        for arm_id, epoch, n, sn, sc, snn, scc, snc in rows
    }


def arm_first_epoch_users(*, arm_ids: list[int]) -> dict[tuple[int, int], int]:
    """(arm id, epoch) → users first seen on that arm in that period: the units the SRM check counts.

    Assignment is sticky, so users seen in a later period mostly arrived under
    earlier weights; only the newcomers of a period were split by its weights.
    """
    if not arm_ids:
        return {}
    sql = f"""
        SELECT arm_id, first_epoch, count(*) FROM (
            SELECT arm_id, user_id, min(epoch) AS first_epoch
              FROM {_table()}
             WHERE arm_id = ANY(%s) AND impressions > 0
             GROUP BY arm_id, user_id
        ) AS firsts
         GROUP BY arm_id, first_epoch
    """
    with connection.cursor() as cur:
        cur.execute(sql, [list(arm_ids)])
        return {(arm_id, epoch): int(n) for arm_id, epoch, n in cur.fetchall()}


def arm_effective_weights(*, experiment: Experiment, arms: list[Arm]) -> dict[str, float]:
    """The split serving applies now: a winner takes everything, paused or retired arms get nothing."""
    if experiment.winner_id is not None:
        return {arm.name: (1.0 if arm.id == experiment.winner_id else 0.0) for arm in arms}
    return {arm.name: (arm.weight if arm.status == Arm.Status.ACTIVE else 0.0) for arm in arms}


@dataclass(frozen=True)
class StatsInputs:
    """Everything ``experiment_report`` needs, read at one moment."""

    arms: dict[str, ClusteredRatioSummary]
    periods: list[AllocationPeriod]
    weights: dict[str, float]
    control: str


def experiment_stats_inputs(*, experiment: Experiment, arms: list[Arm]) -> StatsInputs:
    """Per-arm totals and per-period summaries of an experiment from the rollup.

    The whole-experiment summary of an arm adds its period summaries, so a user
    active in two periods counts as two clusters there; the comparisons use the
    per-period (stratified) estimates where that is exact.
    """
    ids = [arm.id for arm in arms]
    name_of = {arm.id: arm.name for arm in arms}
    sums = arm_epoch_sums(arm_ids=ids)
    epochs = sorted({epoch for _, epoch in sums})
    recorded = {e.epoch: e.weights for e in AllocationEpoch.objects.filter(experiment=experiment)}
    current = arm_effective_weights(experiment=experiment, arms=arms)
    firsts = arm_first_epoch_users(arm_ids=ids) if len(epochs) > 1 else None

    totals = {arm.name: ClusteredRatioSummary.empty() for arm in arms}
    periods: list[AllocationPeriod] = []
    for epoch in epochs:
        per_arm = {arm.name: sums.get((arm.id, epoch), ClusteredRatioSummary.empty()) for arm in arms}
        for name, summary in per_arm.items():
            totals[name] = totals[name] + summary
        weights = {name: float(recorded.get(epoch, current).get(name, 0.0)) for name in per_arm}
        if sum(weights.values()) <= 0:
            weights = current
        assigned = None
        if firsts is not None:
            assigned = {name_of[arm_id]: n for (arm_id, e), n in firsts.items() if e == epoch}
        periods.append(AllocationPeriod(weights=weights, arms=per_arm, assigned=assigned, label=f"epoch {epoch}"))
    control = name_of.get(experiment.control_arm_id) or arms[0].name
    return StatsInputs(arms=totals, periods=periods, weights=current, control=control)


def arm_freshness(*, arms: list[Arm], now: datetime | None = None) -> dict[str, dict[str, Any]]:
    """Per arm: model version, seconds since its last update, serving lag and progressive logloss/AUC.

    Uses training's freshness selector when it is installed, else the latest checkpoint.
    """
    now = now or timezone.now()
    try:
        from experiments.selectors import training as training_selectors

        fresh = getattr(training_selectors, "arm_freshness", None)
    except ImportError:
        fresh = None
    if fresh is not None:
        try:
            return _freshness_from_training(fresh, arms=arms, now=now)
        except Exception as exc:  # a training-side bug must not blank the whole dashboard
            log.warning("stats_freshness_failed error=%s", exc)
    out: dict[str, dict[str, Any]] = {}
    latest = {}
    for cp in ModelCheckpoint.objects.filter(arm__in=arms).order_by("arm_id", "-version").distinct("arm_id"):
        latest[cp.arm_id] = cp
    for arm in arms:
        cp = latest.get(arm.id)
        metrics = (cp.metrics or {}) if cp else {}
        out[arm.name] = {
            "model_version": cp.version if cp else 0,
            "seconds_since_update": (now - cp.created_at).total_seconds() if cp else None,
            "serving_lag_s": metrics.get("event_to_serving_lag_s"),
            "logloss": metrics.get("progressive_logloss", metrics.get("logloss_before")),
            "auc": metrics.get("progressive_auc", metrics.get("auc_before")),
            "examples_seen": cp.examples_seen if cp else 0,
        }
    return out


def _freshness_from_training(fresh, *, arms: list[Arm], now: datetime) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for arm in arms:
        row = fresh(arm=arm) if _takes_arm(fresh) else fresh(arm_id=arm.id)
        row = row if isinstance(row, dict) else getattr(row, "__dict__", {})
        out[arm.name] = {
            "model_version": row.get("model_version", 0),
            "seconds_since_update": row.get("seconds_since_update"),
            "serving_lag_s": row.get("event_to_serving_lag_s", row.get("serving_lag_s")),
            "logloss": row.get("progressive_logloss", row.get("logloss")),
            "auc": row.get("progressive_auc", row.get("auc")),
            "examples_seen": row.get("examples_seen", 0),
        }
    return out


def _takes_arm(fn) -> bool:
    import inspect

    return "arm" in inspect.signature(fn).parameters


def snapshot_latest(*, experiment: Experiment) -> StatsSnapshot | None:
    return StatsSnapshot.objects.filter(experiment=experiment).order_by("-computed_at", "-id").first()


def snapshot_last_two(*, experiment: Experiment) -> list[StatsSnapshot]:
    return list(StatsSnapshot.objects.filter(experiment=experiment).order_by("-computed_at", "-id")[:2])


def history_points(*, experiment: Experiment, limit: int = HISTORY_POINTS) -> list[dict]:
    """The charts' time series: one point per stored snapshot, oldest first."""
    rows = (
        StatsSnapshot.objects.filter(experiment=experiment)
        .order_by("-computed_at", "-id")
        .values_list("payload", flat=True)[:limit]
    )
    return [payload["point"] for payload in reversed(list(rows)) if "point" in payload]


def dashboard_state(*, experiment: Experiment) -> dict:
    """What a dashboard that connects now must see: the latest numbers and the chart history."""
    latest = snapshot_latest(experiment=experiment)
    return {
        "type": "snapshot",
        "experiment": experiment.slug,
        "stats": latest.payload if latest else None,
        "history": history_points(experiment=experiment),
    }


def dashboard_state_apply(state: dict, event: dict, *, limit: int = HISTORY_POINTS) -> dict:
    """Folds one live event into a dashboard state, exactly as static/dashboard/dashboard.js does.

    Lets a test prove that a snapshot plus the events since equals a fresh snapshot.
    """
    if event.get("type") == "snapshot":
        return {k: v for k, v in event.items()}
    if event.get("type") != "stats":
        return state
    current = state.get("stats") or {}
    if current and event["stats"]["seq"] <= current.get("seq", 0):
        # Published between the group join and the snapshot read: already in the snapshot.
        return state
    history = list(state.get("history", []))
    if event.get("replaces_last") and history:
        history[-1] = event["stats"]["point"]
    else:
        history.append(event["stats"]["point"])
    return {**state, "stats": event["stats"], "history": history[-limit:]}


def experiments_for_dashboard() -> list[Experiment]:
    return list(Experiment.objects.order_by("-status", "slug").select_related("winner", "control_arm"))


def experiment_arms(*, experiment: Experiment) -> list[Arm]:
    return list(Arm.objects.filter(experiment=experiment).order_by("id"))
