"""Reads about training: which arms train, per-arm freshness for the stats JSON, and click → serving lags for benchmarks.

**Event → serving lag** of a click: from ``clicked_at`` to the ``served_at`` of
the first impression of its arm served with a model version ≥ the first
accepted checkpoint version whose click range ``(click_from, click_to]`` holds
the click (the version that trained on it). Serving stamps ``model_version``
on every impression, so the lag covers the whole path: waiting for a training
tick, training, the checkpoint commit, the serving reload and the next request.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.db import connection
from django.utils import timezone

from experiments.models import Arm, Click, Experiment, ModelCheckpoint

# Versions, and the clicks they trained on, considered for the live lag figures.
LAG_WINDOW_S = 120.0



def training_arm_ids() -> list[int]:
    """Arms that may get traffic: active arms of running, stopped (the control serves) or concluded experiments,
    and shadow arms (they learn from the served arms' traffic)."""
    return list(
        Arm.objects.filter(status__in=[Arm.Status.ACTIVE, Arm.Status.SHADOW])
        .filter(experiment__status__in=[Experiment.Status.RUNNING, Experiment.Status.STOPPED,
                                        Experiment.Status.CONCLUDED])
        .order_by("id")
        .values_list("id", flat=True)
    )


_FIRST_SERVED_SQL = """
SELECT c.version, c.metrics, EXTRACT(EPOCH FROM (
    SELECT i.served_at FROM experiments_impression i
    WHERE i.arm_id = c.arm_id AND i.id > c.cursor AND i.model_version >= c.version
    ORDER BY i.id LIMIT 1))
FROM experiments_modelcheckpoint c
WHERE c.arm_id = %s AND c.created_at >= %s
  AND (c.metrics ->> 'accepted')::boolean AND COALESCE((c.metrics ->> 'n_clicks')::int, 0) > 0
ORDER BY c.version
"""


def click_serving_lags(*, arm_id: int, since: datetime) -> np.ndarray:
    """Event → serving lag (seconds) of every counted click trained by a version created since ``since``.

    Clicks whose version no impression has been served with yet are left out.
    """
    with connection.cursor() as cur:
        cur.execute(_FIRST_SERVED_SQL, [arm_id, since])
        rows = cur.fetchall()
    ranges = []
    for _version, metrics, served in rows:
        m = json.loads(metrics) if isinstance(metrics, str) else (metrics or {})
        if served is None or m.get("click_from") is None:
            continue
        ranges.append((int(m["click_from"]), int(m["click_to"]), float(served)))
    if not ranges:
        return np.zeros(0)
    lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
    clicks = list(
        Click.objects.filter(arm_id=arm_id, id__gt=lo, id__lte=hi, late=False)
        .order_by("id")
        .values_list("id", "clicked_at")
    )
    if not clicks:
        return np.zeros(0)
    ids = np.array([c[0] for c in clicks], dtype=np.int64)
    at = np.array([c[1].timestamp() for c in clicks])
    lags = []
    for click_from, click_to, served in ranges:
        sel = (ids > click_from) & (ids <= click_to)
        lags.append(served - at[sel])
    return np.concatenate(lags)


def _pct(x: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(x, q)), 3) if x.size else None


def _one(arm: dict[str, Any], now: datetime, window_s: float) -> dict[str, Any]:
    recent = list(
        ModelCheckpoint.objects.filter(arm_id=arm["id"])
        .order_by("-version")
        .values("version", "created_at", "metrics", "examples_seen")[:50]
    )
    head = recent[0] if recent else None
    last_update = next((c for c in recent if (c["metrics"] or {}).get("accepted", True)), None)
    m = (head or {}).get("metrics") or {}
    lags = click_serving_lags(arm_id=arm["id"], since=now - timedelta(seconds=window_s)) if head else np.zeros(0)
    serving = (
        arm["impressions"].order_by("-id").values_list("model_version", flat=True).first()
        if head is not None
        else None
    )
    rejected = [c for c in recent if (c["metrics"] or {}).get("accepted") is False]
    return {
        "arm_id": arm["id"],
        "model_version": head["version"] if head else 0,
        "serving_version": serving,
        "examples_seen": head["examples_seen"] if head else 0,
        "seconds_since_update": (
            round((now - last_update["created_at"]).total_seconds(), 3) if last_update is not None else None
        ),
        "event_to_serving_lag_s": _pct(lags, 50),
        "event_to_serving_lag_p95_s": _pct(lags, 95),
        "event_to_serving_lag_n": int(lags.size),
        "logloss_progressive": m.get("logloss_progressive"),
        "auc_progressive": m.get("auc_progressive"),
        "logloss_baseline": m.get("baseline_logloss"),
        "last_batch_logloss": m.get("logloss_before"),
        "last_batch_accepted": m.get("accepted"),
        "rejected_recent": len(rejected),
        "last_rejection": (rejected[0]["metrics"].get("reject_reason") if rejected else None),
        "health": arm["health"],
        "health_reason": arm["health_reason"],
        # Aliases read by the stats selector.
        "logloss": m.get("logloss_progressive"),
        "auc": m.get("auc_progressive"),
    }


def arm_freshness(
    *,
    arm_ids: list[int] | None = None,
    arm_id: int | None = None,
    now: datetime | None = None,
    window_s: float = LAG_WINDOW_S,
) -> dict[int, dict[str, Any]] | dict[str, Any]:
    """Freshness and progressive metrics per arm: ``{arm_id: {...}}`` for ``arm_ids``, one dict for ``arm_id``.

    Keys: arm_id, model_version, serving_version (version on the arm's newest
    impression), examples_seen, seconds_since_update (since the last accepted
    update), event_to_serving_lag_s / _p95_s / _n (clicks trained by versions of
    the last ``window_s`` seconds), logloss_progressive (cumulative: every
    impression under the model before it learnt from it, against its eventual
    label), auc_progressive (EWMA), logloss_baseline (the
    guardrail's EWMA), last_batch_logloss, last_batch_accepted, rejected_recent
    (among the last 50 versions), last_rejection, health, health_reason, and the
    aliases logloss/auc. Never loads checkpoint state.
    """
    now = now or timezone.now()
    ids = [arm_id] if arm_id is not None else list(arm_ids or [])
    arms = {
        a.id: {"id": a.id, "health": a.health, "health_reason": a.health_reason, "impressions": a.impressions}
        for a in Arm.objects.filter(id__in=ids).only("id", "health", "health_reason")
    }
    out = {i: _one(arms[i], now, window_s) for i in ids if i in arms}
    if arm_id is not None:
        return out.get(arm_id, {})
    return out


def arm_versions(*, arm_id: int, limit: int = 60) -> list[dict[str, Any]]:
    """The kept model versions of an arm, newest first, with what each says about its quality (a rollback's menu)."""
    rows = (
        ModelCheckpoint.objects.filter(arm_id=arm_id)
        .order_by("-version")
        .values("version", "created_at", "metrics", "examples_seen")[:limit]
    )
    out = []
    for row in rows:
        m = row["metrics"] or {}
        out.append({
            "version": row["version"],
            "created_at": row["created_at"],
            "accepted": m.get("accepted", True),
            "reject_reason": m.get("reject_reason") or "",
            "n": m.get("n"),
            "logloss_before": m.get("logloss_before"),
            "logloss_progressive": m.get("logloss_progressive"),
            "auc_progressive": m.get("auc_progressive"),
            "rollback_to": m.get("rollback_to"),
            "examples_seen": row["examples_seen"],
        })
    return out
