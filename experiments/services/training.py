"""Online training: every arm learns from its own impressions and clicks, one writer at a time.

A run of :func:`arm_train` (the Celery task ``recsite.training.train_arm``):

* takes the arm's **training lock**, a session-level Postgres advisory lock
  (``pg_try_advisory_lock``): a second run for the same arm, on any worker of any
  machine, returns ``locked`` at once. Postgres drops the lock with the session,
  so a killed worker never leaves it behind;
* takes **steps** while there is a backlog and its time budget lasts. Each step
  reads up to ``fold_batches`` mini-batches of impressions past ``cursor`` and
  clicks past ``click_cursor`` (:mod:`training_data`, which also explains why
  reads stop at a safe horizon); each mini-batch gets its own guarded update
  (:mod:`training_guard`), weighted (:mod:`training_feedback`), validated
  progressively and applied (:mod:`training_fold`);
* writes **one checkpoint version per step** — state, metrics, both cursors
  and ``examples_seen`` in one transaction, after checking that the version it
  started from is still the latest (the unique ``(arm, version)`` constraint is
  the last line of defence). So an update is applied exactly once, or not at all.
  The state is a delta on the previous version (:mod:`models.deltas`), or a full
  snapshot every ``snapshot_every`` versions (:mod:`experiments.services.checkpoints`);
* after commit, announces the version to serving (Redis pub/sub) and to the
  dashboards (:func:`experiments.services.checkpoints.checkpoint_announce`).

Checkpoint storage and retention live in :mod:`experiments.services.checkpoints`,
queueing runs in :mod:`experiments.services.training_dispatch`, and rolling a
model back to a kept version is a decision (:mod:`experiments.services.decisions`).

A **rejected** mini-batch (non-finite loss, or logloss over the guard factor ×
the rolling baseline) still gets a version: the state of the last good version,
the cursors moved past the batch, ``metrics.accepted = false`` with the reason
and the skipped id ranges; the arm is marked unhealthy. Skipping keeps training
from looping forever on poison data; the ranges stay in the audit trail.

The worker keeps the arm it last trained in memory, keyed by version, and
reloads it from the database whenever another process (another worker, an
admin rollback) wrote a newer version.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from django.db import IntegrityError, connection, transaction

from experiments import observability
from experiments.models import Arm, ModelCheckpoint
from experiments.selectors.training import training_arm_ids
from experiments.services.checkpoints import (
    StaleBase,
    checkpoint_announce,
    checkpoint_copy_insert,
    checkpoint_head,
    checkpoint_model,
    state_compact,
)
from experiments.services.shadow_training import shadow_cursors, shadow_rows_read
from experiments.services.training_config import TrainingConfig
from experiments.services.training_data import safe_horizon, step_rows_read
from experiments.services.training_fold import RetryUnfolded, fit_fold
from experiments.services.training_guard import Baseline
from models.base import Arm as Model
from models.deltas import DeltaTracker, delta_of
from models.types import Batch

log = logging.getLogger(__name__)

LOCK_NAMESPACE = 0x7472_6E00  # "trn\0": keeps arm ids apart from other advisory-lock users
_HOST = f"{socket.gethostname()}:{os.getpid()}"

# arm id → (version, arm object): the model this worker process last wrote or loaded.
_models: dict[int, tuple[int, Model]] = {}
# arm id → (version, tracker): the arm's arrays as that version stored them, for the next delta.
_trackers: dict[int, tuple[int, DeltaTracker]] = {}
# Arms whose next step takes one mini-batch only (a folded step was refused part-way).
_no_fold: set[int] = set()


@dataclass
class StepResult:
    status: str  # "trained" | "rejected" | "idle" | "inflight" | "retry"
    version: int | None = None
    n: int = 0
    reason: str = ""
    more: bool = False
    timings_ms: dict[str, float] = field(default_factory=dict)
    click_lag_s: float | None = None  # the version's oldest click → its commit (accepted steps with clicks)


@dataclass
class TrainRun:
    arm_id: int
    status: str  # "ok" | "locked" | "missing"
    steps: list[StepResult] = field(default_factory=list)

    @property
    def versions(self) -> list[int]:
        return [s.version for s in self.steps if s.version is not None]

    def as_dict(self) -> dict[str, Any]:
        return {"arm_id": self.arm_id, "status": self.status, "steps": [asdict(s) for s in self.steps]}


def lock_key(arm_id: int) -> int:
    return (LOCK_NAMESPACE << 32) | (int(arm_id) & 0xFFFF_FFFF)


def _try_lock(arm_id: int) -> bool:
    with connection.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s)", [lock_key(arm_id)])
        return bool(cur.fetchone()[0])


def _unlock(arm_id: int) -> None:
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s)", [lock_key(arm_id)])
    except Exception as exc:  # a dead connection has released the lock with its session
        log.warning("train_unlock_failed arm=%s error=%s", arm_id, exc)


def _model_for(arm: Arm, version: int) -> Model:
    from experiments.serving.arms import arm_build

    cached = _models.get(arm.id)
    if cached is not None and cached[0] == version:
        return cached[1]
    _trackers.pop(arm.id, None)
    if version == 0:
        model = arm_build(kind=arm.kind, params=arm.params, arm_id=arm.id)
    else:
        model = checkpoint_model(arm_id=arm.id, kind=arm.kind, version=version)
    _models[arm.id] = (version, model)
    return model


def _tracker_for(arm_id: int, version: int) -> DeltaTracker | None:
    """What this worker last wrote of the arm at ``version``; None when it must start from a snapshot."""
    cached = _trackers.get(arm_id)
    return cached[1] if cached is not None and cached[0] == version else None


def _fault_pause(config: TrainingConfig, *, arm_id: int, version: int) -> None:
    """Test-only fault-injection point between partial_fit and commit (RECSITE_TEST_TRAIN_PAUSE)."""
    if config.test_pause_s > 0:
        log.warning("train_pause_begin arm=%s version=%s pause_s=%s", arm_id, version, config.test_pause_s)
        time.sleep(config.test_pause_s)


def _state_for_version(arm: Arm, model: Model, *, version: int, head: dict[str, Any],
                       config: TrainingConfig) -> tuple[bytes, int | None]:
    """The bytes to store for an accepted version, and its snapshot_version (None: a full snapshot)."""
    base_version = head["version"]
    chain_start = head.get("snapshot_version") or base_version
    tracker = _tracker_for(arm.id, base_version)
    if tracker is None or base_version == 0 or version % config.snapshot_every == 0 \
            or version - chain_start >= config.snapshot_every:
        _trackers[arm.id] = (version, DeltaTracker.of(model))
        return state_compact(model.to_bytes()), None
    state = delta_of(model, tracker)
    _trackers[arm.id] = (version, tracker)
    return state, chain_start


def _step(arm: Arm, config: TrainingConfig) -> StepResult:
    t0 = time.perf_counter()
    head = checkpoint_head(arm_id=arm.id) or {"version": 0, "cursor": 0, "click_cursor": 0, "examples_seen": 0,
                                               "metrics": {}, "snapshot_version": None}
    base_version = head["version"]
    horizon = safe_horizon(wait_s=config.inflight_wait_s)
    if horizon is None:
        return StepResult("inflight")
    fold_batches = 1 if arm.id in _no_fold else config.fold_batches
    _no_fold.discard(arm.id)
    shadow = arm.status == Arm.Status.SHADOW  # learns from the served arms' traffic (services/shadow_training.py)
    cursor, click_cursor = shadow_cursors(arm_id=arm.id, head=head) if shadow else (head["cursor"], head["click_cursor"])
    rows = (shadow_rows_read if shadow else step_rows_read)(
        arm_id=arm.id, cursor=cursor, click_cursor=click_cursor, horizon=horizon, limit=config.batch_rows * fold_batches)
    t_read = time.perf_counter()
    if rows.n == 0:
        return StepResult("idle", timings_ms={"read": (t_read - t0) * 1e3})
    model = _model_for(arm, base_version)
    # A tracker must exist before the arm moves: it is the state last written.
    if _tracker_for(arm.id, base_version) is None and base_version > 0:
        _trackers[arm.id] = (base_version, DeltaTracker.of(model))
    baseline = Baseline.from_metrics(head["metrics"])
    t_feat = time.perf_counter()
    chunks = rows.chunks(config.batch_rows)
    try:
        fold = fit_fold(model, chunks, baseline, config)
    except RetryUnfolded:
        _models.pop(arm.id, None)
        _trackers.pop(arm.id, None)
        _no_fold.add(arm.id)
        return StepResult("retry", more=True)
    t_fit = time.perf_counter()
    accepted, touched, reason = fold.accepted, fold.touched, fold.reason
    read, rows = rows, fold.rows
    assert rows is not None and fold.baseline is not None
    new_baseline = fold.baseline
    # Serialise outside the transaction.
    snapshot_version: int | None = None
    version = base_version + 1
    if accepted:
        state, snapshot_version = _state_for_version(arm, model, version=version, head=head, config=config)
    elif base_version == 0:
        from experiments.serving.arms import arm_build

        state = state_compact(arm_build(kind=arm.kind, params=arm.params, arm_id=arm.id).to_bytes())
    else:
        state = None
    t_ser = time.perf_counter()
    metrics: dict[str, Any] = {
        "accepted": accepted,
        "reject_reason": reason,
        "scheme": "fnw-ips" if shadow else "fnw",
        "base_version": base_version,
        "imp_from": cursor,
        "imp_to": rows.cursor,
        "click_from": click_cursor,
        "click_to": rows.click_cursor,
        **({"shadow": True, "shadow_cursor": rows.cursor, "shadow_click_cursor": rows.click_cursor} if shadow else {}),
        "n_impressions": len(rows.impressions),
        "n_clicks": len(rows.clicks),
        "first_click_at": rows.clicks["clicked_at"][0].timestamp() if len(rows.clicks) else None,
        "worker": _HOST,
        "batches": fold.batches,
        "state": "delta" if snapshot_version is not None else ("snapshot" if state is not None else "copy"),
        "state_bytes": len(state) if state is not None else None,
        "timings_ms": {
            "read": round((t_read - t0) * 1e3, 2),
            "fit": round((t_fit - t_feat) * 1e3, 2),
            "serialise": round((t_ser - t_fit) * 1e3, 2),
            "inflight_wait": round(horizon.waited_s * 1e3, 2),
        },
        **(fold.metrics or {"n": rows.n}),
        **new_baseline.as_metrics(),
    }
    try:
        with transaction.atomic():
            latest = ModelCheckpoint.objects.filter(arm_id=arm.id).order_by("-version").values_list("version", flat=True)
            if (latest.first() or 0) != base_version:
                raise StaleBase(f"arm {arm.id} moved past version {base_version}")
            common = {
                "arm_id": arm.id,
                "version": version,
                # A shadow version keeps the arm's own cursors (its shadow cursors are in the metrics).
                "cursor": head["cursor"] if shadow else rows.cursor,
                "click_cursor": head["click_cursor"] if shadow else rows.click_cursor,
                "examples_seen": head["examples_seen"] + (rows.n if accepted else 0),
            }
            if state is not None:
                ModelCheckpoint.objects.create(state=state, snapshot_version=snapshot_version, metrics=metrics,
                                               **common)
            else:
                checkpoint_copy_insert(base_version=base_version, metrics=metrics, **common)
            if not accepted:
                Arm.objects.filter(pk=arm.id).update(health=Arm.Health.UNHEALTHY, health_reason=reason[:2000])
            _fault_pause(config, arm_id=arm.id, version=version)
            slug, name = arm.experiment.slug, arm.name
            transaction.on_commit(
                lambda: checkpoint_announce(arm_id=arm.id, slug=slug, arm_name=name, version=version, metrics=metrics)
            )
    except (StaleBase, IntegrityError):
        _models.pop(arm.id, None)
        _trackers.pop(arm.id, None)
        raise
    t_write = time.perf_counter()
    if accepted or not touched:
        _models[arm.id] = (version, model)
        if not accepted and arm.id in _trackers and _trackers[arm.id][0] == base_version:
            _trackers[arm.id] = (version, _trackers[arm.id][1])  # a copy: the state written is unchanged
    else:
        _models.pop(arm.id, None)
        _trackers.pop(arm.id, None)
    timings = {**metrics["timings_ms"], "write": round((t_write - t_ser) * 1e3, 2)}
    limit = config.batch_rows * fold_batches
    more = rows.n < read.n or len(read.impressions) >= limit or len(read.clicks) >= limit
    if accepted:
        log.info(
            "train_step arm=%s version=%s n=%d clicks=%d batches=%d state=%s bytes=%s logloss_before=%.4f loss=%.4f "
            "read_ms=%.1f fit_ms=%.1f serialise_ms=%.1f write_ms=%.1f",
            arm.id, version, rows.n, len(rows.clicks), fold.batches, metrics["state"], metrics["state_bytes"],
            metrics.get("logloss_before", float("nan")), metrics.get("loss", float("nan")), timings["read"],
            timings["fit"], timings["serialise"], timings["write"],
        )
        lag = time.time() - metrics["first_click_at"] if metrics["first_click_at"] is not None else None
        return StepResult("trained", version, rows.n, "", more, timings, lag)
    log.warning(
        "train_rejected arm=%s version=%s n=%d imp_from=%s imp_to=%s click_from=%s click_to=%s reason=%r",
        arm.id, version, rows.n, head["cursor"], rows.cursor, head["click_cursor"], rows.click_cursor, reason,
    )
    return StepResult("rejected", version, rows.n, reason, more, timings)


def _observe(arm: Arm, step: StepResult) -> None:
    """The step in the Prometheus metrics (experiments/observability.py)."""
    labels = (arm.experiment.slug, arm.name)
    observability.TRAINING_STEPS.labels(*labels, step.status).inc()
    if step.status == "trained":
        observability.TRAINING_EXAMPLES.labels(*labels).inc(step.n)
    if step.timings_ms:
        observability.TRAINING_STEP_SECONDS.labels(*labels).observe(sum(step.timings_ms.values()) / 1e3)
    if step.click_lag_s is not None:
        observability.TRAINING_LAG_SECONDS.labels(*labels).observe(step.click_lag_s)


def arm_train(*, arm_id: int, config: TrainingConfig | None = None) -> TrainRun:
    """Train one arm on what is new (see module doc). Safe to call from anywhere, any number of times."""
    config = config or TrainingConfig.from_env()
    if not _try_lock(arm_id):
        log.info("train_locked arm=%s", arm_id)
        return TrainRun(arm_id, "locked")
    try:
        arm = Arm.objects.select_related("experiment").filter(pk=arm_id).first()
        if arm is None:
            return TrainRun(arm_id, "missing")
        run = TrainRun(arm_id, "ok")
        started = time.monotonic()
        while True:
            try:
                step = _step(arm, config)
            except (StaleBase, IntegrityError):
                _models.pop(arm_id, None)
                raise
            except Exception as exc:
                # A bug, not bad data: the cursors stay (nothing is skipped), the arm shows the error.
                _models.pop(arm_id, None)
                reason = f"training error: {type(exc).__name__}: {exc}"[:2000]
                Arm.objects.filter(pk=arm_id).exclude(health_reason=reason).update(
                    health=Arm.Health.UNHEALTHY, health_reason=reason
                )
                log.exception("train_error arm=%s error=%s", arm_id, type(exc).__name__)
                raise
            run.steps.append(step)
            _observe(arm, step)
            if not step.more or time.monotonic() - started >= config.budget_s:
                return run
    finally:
        _unlock(arm_id)


def training_warmup() -> list[int]:
    """Load every trainable arm into this worker and run one prediction: imports TensorFlow and builds the graphs.

    Called when a trainer starts, so that the first real step of a deep arm
    does not stall every other arm behind a 10 s import-and-trace.
    """
    warmed = []
    for arm in Arm.objects.filter(id__in=training_arm_ids()).select_related("experiment"):
        try:
            head = checkpoint_head(arm_id=arm.id)
            model = _model_for(arm, head["version"] if head else 0)
            p = model.params
            n = 300
            batch = Batch.make(
                user_keys=np.arange(n),
                user_feats=np.zeros((n, int(p.get("user_dim", 8)))),
                item_keys=np.arange(n),
                item_feats=np.zeros((n, int(p.get("item_dim", 16)))),
                labels=np.arange(n) % 2,
                history_len=int(p.get("history_len", 10)),
            )
            model.predict(batch)
            # Updates are traced on a throwaway copy (arms of one shape share their traced graphs); two sizes,
            # so that TF settles on shape-relaxed graphs before the first real batch.
            scratch = type(model).from_bytes(model.to_bytes())
            scratch.partial_fit(batch)
            scratch.partial_fit(batch.take(slice(0, n // 2)))
            warmed.append(arm.id)
        except Exception as exc:  # a broken arm must not keep the worker from starting
            _models.pop(arm.id, None)
            log.warning("train_warmup_failed arm=%s error=%s", arm.id, exc)
    log.info("train_warmup_done arms=%s", ",".join(map(str, warmed)))
    return warmed


