"""Reads for the live statistics: clustered sums per arm and period, snapshots, freshness, results.

Two levels of aggregation keep a tick independent of the experiment's size: serving
keeps ``ArmUserStat`` (one row per arm × user × allocation period) in the same
transaction as each impression and click, and each stats tick folds the rows that
changed since the last tick into ``ArmEpochSums`` (``services.stats.rollup_fold``).
The six sufficient statistics per arm and period (docs/statistics.md) are then a
few rows to read; the ``*_scan`` functions recompute them from the whole rollup.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection
from django.utils import timezone

from experiments import charts
from experiments.models import (
    AllocationEpoch,
    Arm,
    ArmEpochSums,
    Experiment,
    ModelCheckpoint,
    OfflineEstimate,
    StatsSnapshot,
)
from experiments.stats import AllocationPeriod, ClusteredRatioSummary, experiment_report

log = logging.getLogger(__name__)

SUM_FIELDS = ("n_users", "sum_n", "sum_c", "sum_nn", "sum_cc", "sum_nc")
# The dashboard's time axis: at most this many points, one per thinned snapshot.
HISTORY_POINTS = 720


_SCAN_SUMS_SQL = """
    SELECT arm_id, epoch, count(*),
           sum(impressions), sum(clicks),
           sum(impressions::bigint * impressions), sum(clicks::bigint * clicks),
           sum(impressions::bigint * clicks)
      FROM experiments_armuserstat
     WHERE arm_id = ANY(%s) AND impressions > 0
     GROUP BY arm_id, epoch
"""

_SCAN_FIRSTS_SQL = """
    SELECT arm_id, first_epoch, count(*) FROM (
        SELECT arm_id, user_id, min(epoch) AS first_epoch
          FROM experiments_armuserstat
         WHERE arm_id = ANY(%s) AND impressions > 0
         GROUP BY arm_id, user_id
    ) AS firsts
     GROUP BY arm_id, first_epoch
"""


def arm_epoch_sums(*, arm_ids: list[int]) -> dict[tuple[int, int], ClusteredRatioSummary]:
    """(arm id, epoch) → the clustered sums of that arm in that period, as of the last stats tick.

    Reads the running sums the tick folds incrementally (``services.stats.rollup_fold``):
    a few rows per arm, whatever the size of the experiment.
    """
    rows = ArmEpochSums.objects.filter(arm_id__in=arm_ids, n_users__gt=0).values_list(
        "arm_id", "epoch", "n_users", "sum_n", "sum_c", "sum_nn", "sum_cc", "sum_nc"
    )
    return {
        (arm_id, epoch): ClusteredRatioSummary(int(n), float(sn), float(sc), float(snn), float(scc), float(snc))
        for arm_id, epoch, n, sn, sc, snn, scc, snc in rows
    }


def arm_epoch_newcomers(*, arm_ids: list[int]) -> dict[tuple[int, int], int]:
    """(arm id, epoch) → users first seen on the arm in that period, as of the last stats tick."""
    rows = ArmEpochSums.objects.filter(arm_id__in=arm_ids).values_list("arm_id", "epoch", "newcomers")
    return {(arm_id, epoch): int(n) for arm_id, epoch, n in rows if n}


def arm_epoch_sums_scan(*, arm_ids: list[int]) -> dict[tuple[int, int], ClusteredRatioSummary]:
    """The same sums recomputed by one grouped query over the whole rollup (verification, benchmarks).

    Squares are taken in bigint (a user with 50 000 impressions squares to 2.5e9,
    past int4), and summed as numeric so no total can overflow.
    """
    if not arm_ids:
        return {}
    with connection.cursor() as cur:
        cur.execute(_SCAN_SUMS_SQL, [list(arm_ids)])
        rows = cur.fetchall()
    return {
        (arm_id, epoch): ClusteredRatioSummary(int(n), float(sn), float(sc), float(snn), float(scc), float(snc))
        for arm_id, epoch, n, sn, sc, snn, scc, snc in rows
    }


def arm_first_epoch_users_scan(*, arm_ids: list[int]) -> dict[tuple[int, int], int]:
    """(arm id, epoch) → users first seen on that arm in that period: the units the SRM check counts.

    Recomputed over the whole rollup (verification, benchmarks); ticks use ``arm_epoch_newcomers``.

    Assignment is sticky, so users seen in a later period mostly arrived under
    earlier weights; only the newcomers of a period were split by its weights.
    """
    if not arm_ids:
        return {}
    with connection.cursor() as cur:
        cur.execute(_SCAN_FIRSTS_SQL, [list(arm_ids)])
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
    firsts = arm_epoch_newcomers(arm_ids=ids) if len(epochs) > 1 else None

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
            assigned = {name: firsts.get((arm.id, epoch), 0) for arm in arms for name in [arm.name]}
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
    rows = fresh(arm_ids=[arm.id for arm in arms], now=now)
    out: dict[str, dict[str, Any]] = {}
    for arm in arms:
        row = rows.get(arm.id) or {}
        out[arm.name] = {
            "model_version": row.get("model_version", 0),
            "serving_version": row.get("serving_version"),
            "seconds_since_update": row.get("seconds_since_update"),
            "serving_lag_s": row.get("event_to_serving_lag_s"),
            "serving_lag_p95_s": row.get("event_to_serving_lag_p95_s"),
            "logloss": row.get("logloss"),
            "auc": row.get("auc"),
            "examples_seen": row.get("examples_seen", 0),
        }
    return out


def arm_offline_estimates(*, experiment: Experiment) -> dict[str, dict[str, Any]]:
    """The newest stored off-policy estimate per arm name (``manage.py evaluate_offline``)."""
    rows = (
        OfflineEstimate.objects.filter(experiment=experiment)
        .order_by("arm_name", "-computed_at", "-id")
        .distinct("arm_name")
    )
    return {
        row.arm_name: {
            "estimator": row.estimator,
            "value": row.value,
            "ci_low": row.ci_low,
            "ci_high": row.ci_high,
            "model_version": row.model_version,
            "rows": row.rows,
            "effective_sample_size": row.effective_sample_size,
            "computed_at": row.computed_at.isoformat(),
        }
        for row in rows
    }


def snapshot_latest(*, experiment: Experiment) -> StatsSnapshot | None:
    return StatsSnapshot.objects.filter(experiment=experiment).order_by("-computed_at", "-id").first()


def snapshot_last_two(*, experiment: Experiment) -> list[StatsSnapshot]:
    return list(StatsSnapshot.objects.filter(experiment=experiment).order_by("-computed_at", "-id")[:2])


def history_points(*, experiment: Experiment, limit: int = HISTORY_POINTS) -> list[dict]:
    """The charts' time series: one point per stored snapshot, oldest first."""
    rows = (
        StatsSnapshot.objects.filter(experiment=experiment)
        .order_by("-computed_at", "-id")
        .values_list("payload__point", flat=True)[:limit]
    )
    return [point for point in reversed(list(rows)) if point]


def learning_points(point: dict) -> list[dict]:
    """A history point as progressive-validation points for the learning-curve chart."""
    return [
        {"arm": arm, "at": point["at"], "model_version": row.get("model_version"), "logloss": row.get("logloss")}
        for arm, row in point["arms"].items()
    ]


def dashboard_figures(history: list[dict], arms: list[str]) -> dict[str, dict]:
    """Every chart of the dashboard drawn from the history points (what a new browser draws)."""
    figures = charts.dashboard_figures(history, arms)
    figures["learning"] = charts.learning_curve_figure(
        [lp for point in history for lp in learning_points(point)], arms, x="at"
    )
    return figures


def figure_updates(point: dict, arms: list[str]) -> dict[str, dict]:
    """The ``extendTraces`` payloads that add ``point`` to every chart."""
    updates = charts.snapshot_update(point, arms)
    updates["learning"] = charts.learning_curve_update(learning_points(point), arms, x="at")
    return updates


def dashboard_state(*, experiment: Experiment) -> dict:
    """What a dashboard that connects now must see: the latest numbers, the chart history and figures."""
    latest = snapshot_latest(experiment=experiment)
    history = history_points(experiment=experiment)
    arms = latest.payload["report"]["arm_order"] if latest else [a.name for a in experiment_arms(experiment=experiment)]
    return {
        "type": "snapshot",
        "experiment": experiment.slug,
        "stats": latest.payload if latest else None,
        "history": history,
        "figures": dashboard_figures(history, arms),
    }


def _figure_apply(figure: dict, update: dict, *, replace_last: bool, limit: int) -> dict:
    """``Plotly.extendTraces`` with ``maxPoints``, or an overwrite of each trace's last point."""
    fig = charts.apply_update(figure, update)
    if replace_last:
        # The thinned history overwrote its newest row: drop the point that this one replaces.
        for key, columns in update["data"].items():
            for trace_index, values in zip(update["traces"], columns, strict=True):
                series = fig["data"][trace_index][key]
                if len(series) > len(values):
                    del series[-len(values) - 1]
    for trace in fig["data"]:
        trace["x"], trace["y"] = trace["x"][-limit:], trace["y"][-limit:]
    return fig


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
    replace = bool(event.get("replaces_last")) and bool(state.get("history"))
    history = list(state.get("history", []))
    if replace:
        history[-1] = event["stats"]["point"]
    else:
        history.append(event["stats"]["point"])
    history = history[-limit:]
    arms = event["stats"]["report"]["arm_order"]
    figures = state.get("figures") or {}
    if any(fig["layout"]["meta"]["arms"] != arms for fig in figures.values()) or set(figures) != set(event["figure_updates"]):
        # The browser reconnects for a fresh snapshot when the set of arms changes.
        figures = dashboard_figures(history, arms)
    else:
        figures = {
            kind: _figure_apply(fig, event["figure_updates"][kind], replace_last=replace, limit=limit)
            for kind, fig in figures.items()
        }
    return {**state, "stats": event["stats"], "history": history, "figures": figures}


def experiments_for_dashboard() -> list[Experiment]:
    return list(Experiment.objects.order_by("-status", "slug").select_related("winner", "control_arm"))


def experiment_arms(*, experiment: Experiment) -> list[Arm]:
    return list(Arm.objects.filter(experiment=experiment).order_by("id"))


RESULT_FIELDS = (
    "arm", "is_control", "status", "health", "weight", "users", "impressions", "clicks",
    "ctr", "ctr_ci_low", "ctr_ci_high", "lift", "lift_ci_low", "lift_ci_high", "p_value", "p_value_holm",
    "always_valid_p", "always_valid_p_holm", "p_best", "expected_loss", "model_version",
    "seconds_since_update", "logloss", "auc", "offline_estimator", "offline_ctr", "offline_ci_low", "offline_ci_high",
)


def _pair(value: list | None) -> tuple:
    return (value[0], value[1]) if value else (None, None)


def results_rows(payload: dict) -> list[dict]:
    """Per-arm results as flat rows (the CSV/JSON export and the stats API)."""
    report = payload["report"]
    rows = []
    for name in report["arm_order"]:
        r, meta = report["arms"][name], payload["arms"].get(name, {})
        ctr_lo, ctr_hi = _pair(r.get("ctr_ci"))
        offline = meta.get("offline_estimate") or {}
        lift_lo, lift_hi = _pair(r.get("lift_ci"))
        rows.append(
            {
                "arm": name,
                "is_control": r["is_control"],
                "status": meta.get("status"),
                "health": meta.get("health"),
                "weight": r["weight"],
                "users": r["users"],
                "impressions": r["impressions"],
                "clicks": r["clicks"],
                "ctr": r["ctr"],
                "ctr_ci_low": ctr_lo,
                "ctr_ci_high": ctr_hi,
                "lift": r.get("lift"),
                "lift_ci_low": lift_lo,
                "lift_ci_high": lift_hi,
                "p_value": r.get("p_value"),
                "p_value_holm": r.get("p_value_holm"),
                "always_valid_p": r.get("always_valid_p"),
                "always_valid_p_holm": r.get("always_valid_p_holm"),
                "p_best": r.get("p_best"),
                "expected_loss": r.get("expected_loss"),
                "model_version": meta.get("model_version"),
                "seconds_since_update": meta.get("seconds_since_update"),
                "logloss": meta.get("logloss"),
                "auc": meta.get("auc"),
                "offline_estimator": offline.get("estimator"),
                "offline_ctr": offline.get("value"),
                "offline_ci_low": offline.get("ci_low"),
                "offline_ci_high": offline.get("ci_high"),
            }
        )
    return rows


def results(payload: dict) -> dict:
    """The experiment's results document: what ``GET /api/v1/experiments/<slug>/stats`` returns."""
    report = payload["report"]
    return {
        "experiment": payload["experiment"],
        "computed_at": payload["computed_at"],
        "seq": payload["seq"],
        "control": report["control"],
        "alpha": report["alpha"],
        "arms": results_rows(payload),
        "srm": {"p_value": report["srm"]["p_value"], "alert": report["srm"]["alert"]},
        "warnings": report["warnings"],
    }


WEAK_EVIDENCE_P = 0.05


def arm_evidence(payload: dict, arm: str) -> dict:
    """The numbers a promotion is confirmed against, and why the evidence may be weak."""
    report = payload["report"]
    row = next(r for r in results_rows(payload) if r["arm"] == arm)
    weak: list[str] = []
    p = row["always_valid_p"]
    if row["is_control"]:
        others = [r["always_valid_p"] for r in results_rows(payload) if not r["is_control"]]
        if not others or all(o is None or o >= WEAK_EVIDENCE_P for o in others):
            weak.append("No arm differs from the control with always-valid p < 0.05.")
    elif p is None or p >= WEAK_EVIDENCE_P:
        weak.append(f"Always-valid p = {'n/a' if p is None else f'{p:.3g}'} is not below 0.05: the lift may be noise.")
    if report["srm"]["alert"]:
        weak.append(f"Sample-ratio mismatch (p = {report['srm']['p_value']:.2g}): the traffic split is broken.")
    for w in report["warnings"]:
        if w["code"] == "few_data" and w.get("arm") == arm:
            weak.append(w["message"])
    return {"row": row, "weak": weak, "computed_at": payload["computed_at"]}


def _point(report: dict, *, at: str, freshness: dict) -> dict:
    """The compact per-tick record the charts plot (CTR band, traffic, P(best), logloss)."""
    return {
        "at": at,
        "arms": {
            name: {
                "ctr": row["ctr"],
                "ctr_ci": row["ctr_ci"],
                "impressions": row["impressions"],
                "clicks": row["clicks"],
                "p_best": row["p_best"],
                "logloss": (freshness.get(name) or {}).get("logloss"),
                "model_version": (freshness.get(name) or {}).get("model_version"),
            }
            for name, row in report["arms"].items()
        },
    }


def experiment_stats_payload(*, experiment: Experiment, previous: dict | None, now=None) -> dict:
    """The full payload of one tick (pure read; no writes)."""
    started = time.perf_counter()
    now = now or timezone.now()
    arms = experiment_arms(experiment=experiment)
    if not arms:
        raise ValueError(f"experiment {experiment.slug} has no arms")
    inputs = experiment_stats_inputs(experiment=experiment, arms=arms)
    at = now.isoformat()
    report = experiment_report(
        inputs.arms,
        control=inputs.control,
        weights=inputs.weights,
        periods=inputs.periods,
        sequential_state=(previous or {}).get("report", {}).get("sequential_state"),
        seed=experiment.id,
        at=at,
    )
    freshness = arm_freshness(arms=arms, now=now)
    offline = arm_offline_estimates(experiment=experiment)
    arm_meta = {
        arm.name: {
            "id": arm.id,
            "kind": arm.kind,
            "status": arm.status,
            "health": arm.health,
            "health_reason": arm.health_reason,
            "weight": arm.weight,
            "is_winner": arm.id == experiment.winner_id,
            "offline_estimate": offline.get(arm.name),
            **freshness.get(arm.name, {}),
        }
        for arm in arms
    }
    compute_ms = (time.perf_counter() - started) * 1000
    return {
        "experiment": {
            "slug": experiment.slug,
            "name": experiment.name,
            "status": experiment.status,
            "winner": next((a.name for a in arms if a.id == experiment.winner_id), None),
            "allocation_epoch": experiment.allocation_epoch,
        },
        "computed_at": at,
        "seq": int((previous or {}).get("seq", 0)) + 1,
        "compute_ms": round(compute_ms, 1),
        "report": report,
        "arms": arm_meta,
        "point": _point(report, at=at, freshness=freshness),
    }


def experiment_payload_current(*, experiment: Experiment, max_age_s: float = 5.0) -> dict:
    """The latest tick's payload, or a freshly computed one (not stored) when none is recent."""
    latest = snapshot_latest(experiment=experiment)
    if latest is not None and (timezone.now() - latest.computed_at).total_seconds() <= max_age_s:
        return latest.payload
    return experiment_stats_payload(experiment=experiment, previous=latest.payload if latest else None)
