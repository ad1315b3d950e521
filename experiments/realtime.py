"""The browser event boundary: every event a dashboard receives is built here, and only here it is sent.

Like zulip's ``event_types.py``: each event has a typed constructor, so services
never assemble dicts by hand and the shape the dashboard (``static/dashboard/dashboard.js``)
and the Python reducer (``selectors.dashboard.dashboard_state_apply``) read is
stated once. Callers send after commit (``transaction.on_commit``).

Events, all with ``type``:

* ``snapshot`` — what a dashboard sees on connect: latest stats, chart history, figures;
* ``stats`` — one stats tick: the payload and the Plotly ``extendTraces`` updates;
* ``decision`` — an audited traffic decision was recorded;
* ``model_version`` — an arm committed a new model version (accepted or refused);
* ``offline_progress`` — how far a candidate's offline evaluation (a Celery job) has got.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any, Literal, TypedDict

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)


class SnapshotEvent(TypedDict):
    type: Literal["snapshot"]
    experiment: str
    stats: dict[str, Any] | None
    history: list[dict[str, Any]]
    figures: dict[str, dict[str, Any]]


class StatsEvent(TypedDict):
    type: Literal["stats"]
    experiment: str
    replaces_last: bool
    stats: dict[str, Any]
    figure_updates: dict[str, dict[str, Any]]


class DecisionSummary(TypedDict):
    id: int
    action: str
    arm: str | None
    user: str


class DecisionEvent(TypedDict):
    type: Literal["decision"]
    experiment: str
    decision: DecisionSummary


class ModelVersionEvent(TypedDict):
    type: Literal["model_version"]
    arm_id: int
    arm: str
    version: int
    accepted: bool | None
    reject_reason: str
    logloss_progressive: float | None
    auc_progressive: float | None


class OfflineProgressEvent(TypedDict):
    type: Literal["offline_progress"]
    experiment: str
    arm: str
    job: str
    state: Literal["queued", "running", "done", "failed"]
    fraction: float
    stage: str


Event = SnapshotEvent | StatsEvent | DecisionEvent | ModelVersionEvent | OfflineProgressEvent


def snapshot_event(
    *, experiment: str, stats: dict[str, Any] | None, history: list[dict[str, Any]], figures: dict[str, dict[str, Any]]
) -> SnapshotEvent:
    return {"type": "snapshot", "experiment": experiment, "stats": stats, "history": history, "figures": figures}


def stats_event(
    *, experiment: str, stats: dict[str, Any], figure_updates: dict[str, dict[str, Any]], replaces_last: bool
) -> StatsEvent:
    return {
        "type": "stats",
        "experiment": experiment,
        "replaces_last": replaces_last,
        "stats": stats,
        "figure_updates": figure_updates,
    }


def decision_event(*, experiment: str, decision_id: int, action: str, arm: str | None, user: str) -> DecisionEvent:
    return {
        "type": "decision",
        "experiment": experiment,
        "decision": {"id": decision_id, "action": action, "arm": arm, "user": user},
    }


def model_version_event(*, arm_id: int, arm: str, version: int, metrics: dict[str, Any]) -> ModelVersionEvent:
    """From a checkpoint's metrics (training's or a rollback's)."""
    return {
        "type": "model_version",
        "arm_id": arm_id,
        "arm": arm,
        "version": version,
        "accepted": metrics.get("accepted"),
        "reject_reason": metrics.get("reject_reason") or "",
        "logloss_progressive": metrics.get("logloss_progressive"),
        "auc_progressive": metrics.get("auc_progressive"),
    }


def offline_progress_event(*, experiment: str, arm: str, job: str, state: str, fraction: float,
                           stage: str) -> OfflineProgressEvent:
    return {"type": "offline_progress", "experiment": experiment, "arm": arm, "job": job, "state": state,
            "fraction": round(min(1.0, max(0.0, float(fraction))), 4), "stage": stage}


_GROUP_NAME = re.compile(r"^[a-zA-Z\d\-_.]+$")
_GROUP_NAME_MAX = 99  # Channels refuses names of 100 characters or more (and anything but ASCII [-_.a-zA-Z0-9])


def group_name(slug: str) -> str:
    """The Channels group of an experiment's dashboards: readable when the slug fits, else a digest of it.

    A slug cannot contain ".", so ``experiment.h.<digest>`` never collides with a readable name.
    """
    name = f"experiment.{slug}"
    if len(name) <= _GROUP_NAME_MAX and _GROUP_NAME.match(name):
        return name
    return "experiment.h." + hashlib.sha256(slug.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def publish(slug: str, event: Event) -> bool:
    """Sends ``event`` to every dashboard watching ``slug``; False when the layer is down.

    A dead Redis must not break the write that triggered the event: the dashboard
    catches up from its next snapshot.
    """
    layer = get_channel_layer()
    try:
        async_to_sync(layer.group_send)(group_name(slug), {"type": "experiment.event", "payload": event})
    except Exception as exc:
        log.warning("realtime_publish_failed slug=%s error=%s", slug, exc)
        return False
    return True
