"""Guardrails that act: pause a harmful or diverging arm, roll back a model whose quality collapsed.

Beat runs :func:`guardrails_check` every ``RECSITE_GUARDRAIL_INTERVAL_S`` (15 s) over the
running experiments whose ``guardrails`` setting is on. Each action is an audited
decision made by the system (no user), with the evidence that triggered it, and the
dashboard shows it as a banner. The rules are pure functions of what training and
the stats tick already record, so they are tested without a database:

* **diverging updates** (:func:`diverging`) — the arm's newest ``DIVERGED_STREAK``
  model versions were all refused because the update itself blew up (a non-finite
  loss or prediction, the arm's ``DivergedUpdateError``): the arm is **paused** and
  its users move to the other arms. Bad input data alone (a refused bad batch) is not
  the arm's fault and does not count.
* **CTR below control** (:func:`ctr_harm`) — the arm's always-valid p-value against
  the control, Holm-adjusted across arms, is below the experiment's
  ``guardrail_alpha`` and the confidence sequence of its lift lies below 0: the arm
  is **paused**. Always-valid, so checking every 15 s does not inflate false alarms.
  Judged on the experiment's ``primary_metric`` (CTR by default; rule ``<metric>_below_control``).
* **logloss collapse** (:func:`logloss_collapse`) — the progressive logloss of the
  newest ``COLLAPSE_WINDOW`` judged batches is above ``COLLAPSE_FACTOR`` × the median
  of the ``REFERENCE_VERSIONS`` before them: the model is **rolled back** to the last
  version that was still measured good (the one the last good batch was scored with).

* **serving bounds** (:func:`serving_breach`) — over the last ``RECSITE["GUARDRAIL_WINDOW_MINUTES"]`` the
  arm's serving latency p95, error rate or catalogue coverage breaches the experiment's ``GuardrailBounds``
  (latency and coverage off, error rate 5 % by default), on evidence (``experiments/stats/serving_health.py``:
  a 99 % lower confidence bound above the bound, after ``min_requests``): the arm is **paused**.

The control arm, a winner and a running holdout's baseline are never paused by a guardrail (that would end the
comparison; their health shows on the dashboard), nor the last arm with traffic. An
operator's resume overrides a guardrail's pause: the CTR rule leaves a resumed arm
alone, and the divergence rule only counts versions made after the resume. After a
rollback, the collapse rule starts afresh from the restored version, and does not
roll the same arm back again within ``ROLLBACK_COOLDOWN``.
"""

from __future__ import annotations

import logging
import math
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from experiments.errors import ApplicationError
from experiments.models import Arm, Decision, Experiment, ModelCheckpoint
from experiments.selectors.arm_health import arms_health, bounds_of
from experiments.selectors.metrics import primary_metric_rows
from experiments.selectors.results import snapshot_latest
from experiments.services import decisions as decision_services
from experiments.stats.serving_health import ArmHealth, Bounds, breaches

log = logging.getLogger(__name__)

DIVERGED_STREAK = 3
COLLAPSE_FACTOR = 1.5
COLLAPSE_WINDOW = 3
REFERENCE_VERSIONS = 10
MIN_REFERENCE = 5
MIN_ROWS = 100
ROLLBACK_COOLDOWN = timedelta(minutes=30)
# How many of an arm's newest checkpoints the model rules read (metrics only, never the state).
HISTORY = 40

ACTOR = "guardrail"
_DIVERGED_MARKS = ("non-finite", "DivergedUpdateError", "update refused by the arm")


@dataclass(frozen=True)
class Verdict:
    rule: str
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)


def diverging(metrics_newest_first: list[dict[str, Any]], *, streak: int = DIVERGED_STREAK) -> Verdict | None:
    """The newest ``streak`` versions all refused for a diverged update (see module doc)."""
    recent = metrics_newest_first[:streak]
    if len(recent) < streak:
        return None
    reasons = [str(m.get("reject_reason") or "") for m in recent]
    if not all(m.get("accepted") is False for m in recent) or not all(
        any(mark in r for mark in _DIVERGED_MARKS) for r in reasons
    ):
        return None
    return Verdict("diverging_updates", f"Its last {streak} model updates diverged ({reasons[0][:200]}).",
                   {"reject_reasons": reasons})


METRIC_LABELS = {"ctr": "CTR", "conversion_rate": "Conversion rate", "revenue_per_user": "Revenue per user"}


def ctr_harm(row: dict[str, Any], *, alpha: float, metric: str = "ctr") -> Verdict | None:
    """Significantly below the control at the guardrail's α on the primary metric (always-valid, Holm-adjusted; see
    module doc). ``row``: the report's arm row for CTR, else the primary metric's row of the payload's metrics."""
    p = row.get("always_valid_p_holm")
    cs = row.get("lift_cs") or [None, None]
    if row.get("is_control") or p is None or p >= alpha or cs[1] is None or cs[1] >= 0:
        return None
    lift = row.get("lift")
    shown = "n/a" if lift is None else f"{lift:+.1%}"
    facts = {"ctr": row.get("ctr"), "impressions": row.get("impressions")} if metric == "ctr" else {
        "metric": metric, "value": row.get("value"), "users": row.get("users")}
    return Verdict(
        f"{metric}_below_control",
        f"{METRIC_LABELS.get(metric, metric)} below the control: lift {shown}, always-valid p (Holm) = {p:.2g} < "
        f"α = {alpha:g}, confidence sequence of the lift [{cs[0]:+.1%}, {cs[1]:+.1%}].",
        {"always_valid_p_holm": p, "alpha": alpha, "lift": lift, "lift_cs": cs, **facts},
    )


def logloss_collapse(
    history_oldest_first: list[tuple[int, dict[str, Any]]],
    *,
    factor: float = COLLAPSE_FACTOR,
    window: int = COLLAPSE_WINDOW,
    reference: int = REFERENCE_VERSIONS,
    min_rows: int = MIN_ROWS,
) -> tuple[int, Verdict] | None:
    """``(version to roll back to, verdict)`` when the progressive logloss collapsed (see module doc).

    ``history_oldest_first``: ``(version, metrics)`` of the arm's checkpoints since its last rollback.
    A checkpoint's ``logloss_before`` scores the model of its ``base_version`` on a batch that model never saw.
    """
    judged = [
        (version, int(m.get("base_version", version - 1)), float(m["logloss_before"]))
        for version, m in history_oldest_first
        if isinstance(m.get("logloss_before"), (int, float)) and math.isfinite(m["logloss_before"])
        and int(m.get("n") or 0) >= min_rows
    ]
    if len(judged) < window + MIN_REFERENCE:
        return None
    recent, before = judged[-window:], judged[:-window][-reference:]
    level = statistics.median(ll for _, _, ll in before)
    if level <= 0 or not all(ll > factor * level for _, _, ll in recent):
        return None
    target = before[-1][1]  # the model the last good batch was scored with
    return target, Verdict(
        "logloss_collapse",
        f"Progressive logloss of its last {window} batches ({', '.join(f'{ll:.3f}' for _, _, ll in recent)}) is over "
        f"{factor:g} x the median {level:.3f} of the {len(before)} before: rolled back to version {target}.",
        {"reference_logloss": level, "recent": [{"version": v, "base_version": b, "logloss_before": ll}
                                                for v, b, ll in recent], "factor": factor, "to_version": target},
    )


# ---------------------------------------------------------------------------- acting


def _last_decision(arm: Arm, actions: tuple[str, ...]) -> Decision | None:
    return Decision.objects.filter(arm=arm, action__in=actions).order_by("-created_at", "-id").first()


def _pause(arm: Arm, verdict: Verdict) -> Decision | None:
    try:
        return decision_services.arm_status_set(
            arm=arm, status=Arm.Status.PAUSED, user=None, reason=f"Guardrail: {verdict.message}",
            action=Decision.Action.GUARDRAIL_PAUSE, actor=ACTOR,
            extra_evidence={"guardrail": {"rule": verdict.rule, **verdict.evidence}},
        )
    except ApplicationError as exc:  # e.g. the last arm with traffic: the banner of its health must do
        log.warning("guardrail_pause_refused arm=%s rule=%s code=%s", arm.id, verdict.rule, exc.code)
        return None


def serving_breach(health: ArmHealth | None, bounds: Bounds) -> Verdict | None:
    """The first serving bound (latency p95, error rate, coverage) the arm breaches on evidence (see
    ``experiments.stats.serving_health``), as a verdict."""
    found = breaches(health, bounds) if health is not None else []
    return Verdict(found[0].rule, found[0].message, found[0].evidence) if found else None


def _arm_pause_check(arm: Arm, row: dict | None, alpha: float, metric: str = "ctr", *,
                     resumed: Decision | None = None, health: ArmHealth | None = None,
                     bounds: Bounds | None = None) -> Decision | None:
    since = resumed.created_at if resumed is not None else None
    checkpoints = ModelCheckpoint.objects.filter(arm=arm).order_by("-version")
    if since is not None:
        checkpoints = checkpoints.filter(created_at__gt=since)
    verdict = diverging(list(checkpoints.values_list("metrics", flat=True)[:DIVERGED_STREAK]))
    if verdict is None and bounds is not None:  # health counts only what the arm served after a resume
        verdict = serving_breach(health, bounds)
    if verdict is None and row is not None:
        overridden = resumed is not None and Decision.objects.filter(
            arm=arm, action=Decision.Action.GUARDRAIL_PAUSE, created_at__lt=resumed.created_at).exists()
        verdict = None if overridden else ctr_harm(row, alpha=alpha, metric=metric)
    return _pause(arm, verdict) if verdict is not None else None


def _arm_rollback_check(arm: Arm, now: datetime) -> Decision | None:
    last = _last_decision(arm, (Decision.Action.CHECKPOINT_ROLLBACK, Decision.Action.GUARDRAIL_ROLLBACK))
    if last is not None and last.action == Decision.Action.GUARDRAIL_ROLLBACK and now - last.created_at < ROLLBACK_COOLDOWN:
        return None
    rows = list(ModelCheckpoint.objects.filter(arm=arm).order_by("-version").values_list("version", "metrics")[:HISTORY])
    since_rollback = []
    for version, metrics in rows:
        if (metrics or {}).get("rollback_to") is not None:
            break
        since_rollback.append((version, metrics or {}))
    found = logloss_collapse(list(reversed(since_rollback)))
    if found is None:
        return None
    target, verdict = found
    kept = (ModelCheckpoint.objects.filter(arm=arm, version__lte=target).order_by("-version")
            .values_list("version", flat=True).first())
    if kept is None or kept == rows[0][0]:
        return None
    decision_services.checkpoint_rollback_apply(
        arm_id=arm.id, version=kept, user=None, reason=f"Guardrail: {verdict.message}",
        action=Decision.Action.GUARDRAIL_ROLLBACK, actor=ACTOR,
        extra_evidence={"guardrail": {"rule": verdict.rule, **verdict.evidence, "to_version": kept}},
    )
    return _last_decision(arm, (Decision.Action.GUARDRAIL_ROLLBACK,))


def experiment_guardrails(*, experiment: Experiment, now: datetime | None = None) -> list[Decision]:
    """Every rule on every arm of one experiment; the decisions made."""
    now = now or timezone.now()
    latest = snapshot_latest(experiment=experiment)
    payload = latest.payload if latest else {}
    primary = primary_metric_rows(payload)  # None: CTR is primary, judged on the report's rows
    rows = primary if primary is not None else (payload.get("report") or {}).get("arms") or {}
    metric = experiment.primary_metric if primary is not None else "ctr"
    made: list[Decision] = []
    arms = list(Arm.objects.filter(experiment=experiment, status=Arm.Status.ACTIVE).order_by("id"))
    resumed = {arm.id: _last_decision(arm, (Decision.Action.RESUME,)) for arm in arms}
    bounds = bounds_of(experiment)
    health = arms_health(experiment=experiment, arms=arms, now_s=now.timestamp(),
                         resumed={arm_id: d.created_at if d else None for arm_id, d in resumed.items()}) or {}
    for arm in arms:
        try:
            rollback = _arm_rollback_check(arm, now)
            if rollback is not None:
                made.append(rollback)
            if arm.id in (experiment.control_arm_id, experiment.winner_id) or (
                    experiment.holdout_running and arm.id == experiment.holdout_arm_id):
                continue
            pause = _arm_pause_check(arm, rows.get(arm.name), experiment.guardrail_alpha, metric,
                                     resumed=resumed[arm.id], health=health.get(arm.id), bounds=bounds)
            if pause is not None:
                made.append(pause)
        except Exception:
            # One arm's failure must not stop the guardrails of the others.
            log.exception("guardrail_check_failed experiment=%s arm=%s", experiment.slug, arm.id)
    return made


def guardrails_check(*, now: datetime | None = None) -> list[Decision]:
    """Beat: the guardrails of every running experiment that has them on."""
    made: list[Decision] = []
    for experiment in Experiment.objects.filter(status=Experiment.Status.RUNNING, guardrails=True).order_by("id"):
        made.extend(experiment_guardrails(experiment=experiment, now=now))
    for decision in made:
        log.warning("guardrail_acted experiment=%s arm=%s action=%s decision=%s", decision.experiment_id,
                    decision.arm_id, decision.action, decision.id)
    return made
