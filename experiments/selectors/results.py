"""Reads of an experiment's results: the stats payload of a tick, its flat rows, and a promotion's evidence.

The payload (:func:`experiment_stats_payload`) is what a stats tick stores and
pushes; :func:`results` is what ``GET /api/v1/experiments/<slug>/stats`` and the
exports return.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from django.utils import timezone

from experiments.errors import ApplicationError
from experiments.models import Arm, Experiment, OfflineEstimate, StatsSnapshot
from experiments.selectors import interleaving as interleaving_selectors
from experiments.selectors import metrics as metric_selectors
from experiments.selectors import policy as policy_selectors
from experiments.selectors import shadow as shadow_selectors
from experiments.selectors import training as training_selectors
from experiments.selectors.arm_health import guardrail_metrics_section
from experiments.selectors.rollups import experiment_stats_inputs
from experiments.stats import experiment_report


def experiment_arms(*, experiment: Experiment) -> list[Arm]:
    return list(Arm.objects.filter(experiment=experiment).order_by("id"))


def arm_freshness(*, arms: list[Arm], now: datetime | None = None) -> dict[str, dict[str, Any]]:
    """Per arm name: model version, seconds since its last update, serving lag and progressive logloss/AUC."""
    now = now or timezone.now()
    rows = training_selectors.arm_freshness(arm_ids=[arm.id for arm in arms], now=now)
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
    return {row.arm_name: offline_estimate_summary(row) for row in rows}


def offline_estimate_summary(row: OfflineEstimate) -> dict[str, Any]:
    """What the dashboard shows of one stored estimate: the default estimator (clipped to [0, 1]), every estimator
    with its interval and clip reason, the overlap diagnostics, and whether there is too little overlap to show a
    number at all."""
    result = row.result or {}
    insufficient = bool(result.get("insufficient_overlap"))
    return {
        "estimator": row.estimator,
        "value": None if insufficient else row.value,
        "ci_low": None if insufficient else row.ci_low,
        "ci_high": None if insufficient else row.ci_high,
        "model_version": row.model_version,
        "rows": row.rows,
        "effective_sample_size": row.effective_sample_size,
        "max_weight": result.get("max_weight"),
        "insufficient_overlap": insufficient,
        "estimators": {
            name: {k: e.get(k) for k in ("value", "ci_low", "ci_high", "clipped", "clip_reason")}
            for name, e in (result.get("offline_estimate") or {}).items()
        },
        "computed_at": row.computed_at.isoformat(),
    }


def snapshot_latest(*, experiment: Experiment) -> StatsSnapshot | None:
    return StatsSnapshot.objects.filter(experiment=experiment).order_by("-computed_at", "-id").first()


def snapshot_last_two(*, experiment: Experiment) -> list[StatsSnapshot]:
    return list(StatsSnapshot.objects.filter(experiment=experiment).order_by("-computed_at", "-id")[:2])


RESULT_FIELDS = (
    "arm", "is_control", "is_holdout", "status", "health", "weight", "users", "impressions", "clicks",
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
                "is_holdout": bool(meta.get("is_holdout")),
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
    out = {
        "experiment": payload["experiment"],
        "computed_at": payload["computed_at"],
        "seq": payload["seq"],
        "control": report["control"],
        "alpha": report["alpha"],
        "arms": results_rows(payload),
        "srm": {"p_value": report["srm"]["p_value"], "alert": report["srm"]["alert"]},
        "warnings": report["warnings"],
        "primary_metric": payload["experiment"].get("primary_metric", "ctr"),
        "metrics": payload.get("metrics", []),
        "guardrail_metrics": payload.get("guardrail_metrics"),
    }
    if "interleaving" in payload:
        out["pairs"] = interleaving_selectors.pair_rows(payload["interleaving"])
    return out


WEAK_EVIDENCE_P = 0.05


def arm_evidence(payload: dict, arm: str) -> dict:
    """The numbers a promotion is confirmed against, and why the evidence may be weak."""
    report = payload["report"]
    row = next(r for r in results_rows(payload) if r["arm"] == arm)
    weak: list[str] = []
    # The primary metric's always-valid p is the evidence (CTR's, the report's rows, unless another is primary).
    primary = metric_selectors.primary_metric_rows(payload)
    p_of = {r["arm"]: r["always_valid_p"] for r in (primary.values() if primary else results_rows(payload))}
    label = "" if primary is None else f" on {payload['experiment']['primary_metric']}"
    p = p_of.get(arm)
    if row["is_control"]:
        others = [p_of.get(r["arm"]) for r in results_rows(payload) if not r["is_control"]]
        if not others or all(o is None or o >= WEAK_EVIDENCE_P for o in others):
            weak.append(f"No arm differs from the control{label} with always-valid p < 0.05.")
    elif p is None or p >= WEAK_EVIDENCE_P:
        weak.append(f"Always-valid p{label} = {'n/a' if p is None else f'{p:.3g}'} is not below 0.05: the lift may "
                    "be noise.")
    if report["srm"]["alert"]:
        weak.append(f"Sample-ratio mismatch (p = {report['srm']['p_value']:.2g}): the traffic split is broken.")
    for w in report["warnings"]:
        if w["code"] == "few_data" and w.get("arm") == arm:
            weak.append(w["message"])
    if "interleaving" in payload:  # the pairwise preference is the evidence of an interleaved experiment
        weak = [w for w in weak if not w.startswith(("Always-valid p", "No arm differs"))]
        weak += interleaving_selectors.interleaving_weak_evidence(payload["interleaving"], arm)
    metric = None if primary is None else {"name": payload["experiment"]["primary_metric"], **(primary.get(arm) or {})}
    return {"row": row, "weak": weak, "computed_at": payload["computed_at"], "primary_metric": metric}


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
        raise ApplicationError("experiment_has_no_arms", f"experiment {experiment.slug!r} has no arms yet: add one first",
                               status=409)
    inputs = experiment_stats_inputs(experiment=experiment, arms=arms)
    interleaved = experiment.mode == Experiment.Mode.INTERLEAVED
    if interleaved:
        # Team draft gives every interleaved arm the same expected share, whatever the weights (0 = left out):
        # the sample-ratio check tests that split instead of the configured weights.
        inputs = interleaving_selectors.equal_split(inputs)
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
    metrics, metrics_state = metric_selectors.metrics_section(experiment=experiment, arms=arms, inputs=inputs,
                                                              report=report, previous=previous)
    freshness = arm_freshness(arms=arms, now=now)
    offline = arm_offline_estimates(experiment=experiment)
    shadow = shadow_selectors.shadow_estimates(arms=arms, seed=experiment.id, previous=(previous or {}).get("arms"))
    arm_meta = {
        arm.name: {
            "id": arm.id,
            "kind": arm.kind,
            "status": arm.status,
            "health": arm.health,
            "health_reason": arm.health_reason,
            "weight": arm.weight,
            "is_winner": arm.id == experiment.winner_id,
            # The holdout's baseline (its numbers are the holdout's); "holdout_running" False once it was ended.
            "is_holdout": arm.id == experiment.holdout_arm_id,
            "holdout_running": arm.id == experiment.holdout_arm_id and experiment.holdout_running,
            # A shadow arm shows its live doubly robust estimate where the others show their stored offline one.
            "offline_estimate": shadow.get(arm.name) or offline.get(arm.name),
            "shadow_estimate": shadow.get(arm.name),
            **freshness.get(arm.name, {}),
        }
        for arm in arms
    }
    section = None
    point = _point(report, at=at, freshness=freshness)
    if interleaved:
        section = interleaving_selectors.interleaving_section(experiment=experiment, arms=arms,
                                                              previous=(previous or {}).get("interleaving"))
        point["pairs"] = interleaving_selectors.pair_point(section)
    compute_ms = (time.perf_counter() - started) * 1000
    payload = {
        "experiment": {
            "slug": experiment.slug,
            "name": experiment.name,
            "status": experiment.status,
            "winner": next((a.name for a in arms if a.id == experiment.winner_id), None),
            "allocation_epoch": experiment.allocation_epoch,
            "conclusion": experiment.conclusion,
            "mode": experiment.mode,
            "primary_metric": experiment.primary_metric,
        },
        "computed_at": at,
        "seq": int((previous or {}).get("seq", 0)) + 1,
        "compute_ms": round(compute_ms, 1),
        "report": report,
        "metrics": metrics,
        "metrics_state": metrics_state,
        "arms": arm_meta,
        "point": point,
        "allocation": policy_selectors.allocation_summary(experiment=experiment),
        "guardrails": policy_selectors.guardrail_banners(experiment=experiment, now=now),
        "guardrail_metrics": guardrail_metrics_section(experiment=experiment, arms=arms, now_s=now.timestamp()),
    }
    if section is not None:
        payload["interleaving"] = section
    return payload


def experiment_payload_current(*, experiment: Experiment, max_age_s: float = 5.0) -> dict:
    """The latest tick's payload, or a freshly computed one (not stored) when none is recent."""
    latest = snapshot_latest(experiment=experiment)
    if latest is not None and (timezone.now() - latest.computed_at).total_seconds() <= max_age_s:
        return latest.payload
    return experiment_stats_payload(experiment=experiment, previous=latest.payload if latest else None)
