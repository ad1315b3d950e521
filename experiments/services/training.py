"""Online training: every arm learns from its own impressions and clicks, one writer at a time.

A run of :func:`arm_train` (the Celery task ``recsite.training.train_arm``):

* takes the arm's **training lock**, a session-level Postgres advisory lock
  (``pg_try_advisory_lock``): a second run for the same arm, on any worker of any
  machine, returns ``locked`` at once. Postgres drops the lock with the session,
  so a killed worker never leaves it behind;
* takes **mini-batches** while there is a backlog and its time budget lasts. Each
  mini-batch reads the impressions past ``cursor`` and the clicks past
  ``click_cursor`` (see :mod:`training_data` for why reads stop at a safe
  horizon), builds the FNW batch (:mod:`training_feedback`), validates it
  progressively and applies the guarded update (:mod:`training_guard`);
* writes **one checkpoint version per mini-batch** — state, metrics, both cursors
  and ``examples_seen`` in one transaction, after checking that the version it
  started from is still the latest (the unique ``(arm, version)`` constraint is
  the last line of defence). So an update is applied exactly once, or not at all;
* after commit, announces the version to serving (Redis pub/sub) and to the
  dashboards (:func:`experiments.realtime.publish`).

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

import io
import json
import logging
import os
import socket
import time
import zipfile
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q

from experiments import realtime
from experiments.models import Arm, Decision, Experiment, ModelCheckpoint
from experiments.services.training_config import TrainingConfig
from experiments.services.training_data import safe_horizon, step_batch, step_rows_read
from experiments.services.training_guard import Baseline, step_guarded

log = logging.getLogger(__name__)

LOCK_NAMESPACE = 0x7472_6E00  # "trn\0": keeps arm ids apart from other advisory-lock users
MODEL_VERSION_CHANNEL = "recsite:model_version"
_HOST = f"{socket.gethostname()}:{os.getpid()}"

# arm id → (version, arm object): the model this worker process last wrote or loaded.
_models: dict[int, tuple[int, Any]] = {}


class StaleBase(Exception):
    """Another writer produced a version after this step read its base: the step is dropped."""


@dataclass
class StepResult:
    status: str  # "trained" | "rejected" | "idle" | "inflight"
    version: int | None = None
    n: int = 0
    reason: str = ""
    more: bool = False
    timings_ms: dict[str, float] = field(default_factory=dict)


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


def _head(arm_id: int) -> dict[str, Any] | None:
    return (
        ModelCheckpoint.objects.filter(arm_id=arm_id)
        .order_by("-version")
        .values("version", "cursor", "click_cursor", "examples_seen", "metrics")
        .first()
    )


def _model_for(arm: Arm, version: int) -> Any:
    from experiments.serving.arms import arm_build, arm_restore

    cached = _models.get(arm.id)
    if cached is not None and cached[0] == version:
        return cached[1]
    if version == 0:
        model = arm_build(kind=arm.kind, params=arm.params, arm_id=arm.id)
    else:
        state = ModelCheckpoint.objects.filter(arm_id=arm.id, version=version).values_list("state", flat=True).get()
        model = arm_restore(kind=arm.kind, state=bytes(state))
    _models[arm.id] = (version, model)
    return model


def state_compact(raw: bytes) -> bytes:
    """The arm's ``.npz`` checkpoint re-zipped with DEFLATE level 1.

    ``np.load`` (so ``Arm.from_bytes``) reads it unchanged. Hash tables and
    optimizer slots are mostly untouched buckets: a 17 MB popularity state becomes
    ~130 kB in ~80 ms, which is what makes one version per mini-batch affordable.
    """
    src = io.BytesIO(raw)
    if not zipfile.is_zipfile(src):
        return raw
    out = io.BytesIO()
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            # Dense trained weights (embeddings) barely compress: store them, deflate the sparse rest.
            probe = data[: 1 << 16]
            dense = len(data) > (1 << 18) and len(zlib.compress(probe, 1)) > 0.8 * len(probe)
            zout.writestr(info.filename, data, compress_type=zipfile.ZIP_STORED if dense else zipfile.ZIP_DEFLATED)
    packed = out.getvalue()
    return packed if len(packed) < len(raw) else raw


def _fault_pause(config: TrainingConfig, *, arm_id: int, version: int) -> None:
    """Test-only fault-injection point between partial_fit and commit (RECSITE_TEST_TRAIN_PAUSE)."""
    if config.test_pause_s > 0:
        log.warning("train_pause_begin arm=%s version=%s pause_s=%s", arm_id, version, config.test_pause_s)
        time.sleep(config.test_pause_s)


def _redis():
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)


def _announce(*, arm_id: int, slug: str, arm_name: str, version: int, metrics: dict[str, Any]) -> None:
    """After commit: serving's reloader and the dashboards hear of the new version. Never raises."""
    try:
        _redis().publish(MODEL_VERSION_CHANNEL, json.dumps({"arm_id": arm_id, "version": version}))
    except Exception as exc:
        log.warning("model_version_publish_failed arm=%s version=%s error=%s", arm_id, version, exc)
    realtime.publish(
        slug,
        {
            "type": "model_version",
            "arm_id": arm_id,
            "arm": arm_name,
            "version": version,
            "accepted": metrics.get("accepted"),
            "reject_reason": metrics.get("reject_reason") or "",
            "logloss_progressive": metrics.get("logloss_progressive"),
            "auc_progressive": metrics.get("auc_progressive"),
        },
    )


def _step(arm: Arm, config: TrainingConfig) -> StepResult:
    t0 = time.perf_counter()
    head = _head(arm.id) or {"version": 0, "cursor": 0, "click_cursor": 0, "examples_seen": 0, "metrics": {}}
    base_version = head["version"]
    horizon = safe_horizon(wait_s=config.inflight_wait_s)
    if horizon is None:
        return StepResult("inflight")
    rows = step_rows_read(
        arm_id=arm.id,
        cursor=head["cursor"],
        click_cursor=head["click_cursor"],
        horizon=horizon,
        limit=config.batch_rows,
    )
    t_read = time.perf_counter()
    if rows.n == 0:
        return StepResult("idle", timings_ms={"read": (t_read - t0) * 1e3})
    model = _model_for(arm, base_version)
    baseline = Baseline.from_metrics(head["metrics"])
    from models.errors import BadBatchError

    t_feat = time.perf_counter()
    try:
        batch = step_batch(rows=rows, params=model.params)
    except BadBatchError as exc:
        outcome = None
        reason = f"bad batch: {exc}"
    else:
        outcome = step_guarded(model=model, batch=batch, baseline=baseline, config=config)
        reason = outcome.reason
    t_fit = time.perf_counter()
    accepted = outcome is not None and outcome.accepted
    touched = outcome is not None and outcome.touched
    new_baseline = outcome.baseline if outcome is not None else baseline
    # Serialise outside the transaction: it is the slow part for the big arms.
    if accepted:
        state = state_compact(model.to_bytes())
    elif base_version == 0:
        from experiments.serving.arms import arm_build

        state = state_compact(arm_build(kind=arm.kind, params=arm.params, arm_id=arm.id).to_bytes())
    else:
        state = None
    t_ser = time.perf_counter()
    version = base_version + 1
    metrics: dict[str, Any] = {
        "accepted": accepted,
        "reject_reason": reason,
        "scheme": "fnw",
        "base_version": base_version,
        "imp_from": head["cursor"],
        "imp_to": rows.cursor,
        "click_from": head["click_cursor"],
        "click_to": rows.click_cursor,
        "n_impressions": len(rows.impressions),
        "n_clicks": len(rows.clicks),
        "first_click_at": rows.clicks[0]["clicked_at"].timestamp() if rows.clicks else None,
        "worker": _HOST,
        "timings_ms": {
            "read": round((t_read - t0) * 1e3, 2),
            "fit": round((t_fit - t_feat) * 1e3, 2),
            "serialise": round((t_ser - t_fit) * 1e3, 2),
            "inflight_wait": round(horizon.waited_s * 1e3, 2),
        },
        **(outcome.metrics if outcome is not None else {"n": rows.n}),
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
                "cursor": rows.cursor,
                "click_cursor": rows.click_cursor,
                "examples_seen": head["examples_seen"] + (rows.n if accepted else 0),
            }
            if state is not None:
                ModelCheckpoint.objects.create(state=state, metrics=metrics, **common)
            else:
                _insert_copy_of(base_version=base_version, metrics=metrics, **common)
            if not accepted:
                Arm.objects.filter(pk=arm.id).update(health=Arm.Health.UNHEALTHY, health_reason=reason[:2000])
            _fault_pause(config, arm_id=arm.id, version=version)
            slug, name = arm.experiment.slug, arm.name
            transaction.on_commit(
                lambda: _announce(arm_id=arm.id, slug=slug, arm_name=name, version=version, metrics=metrics)
            )
    except (StaleBase, IntegrityError):
        _models.pop(arm.id, None)
        raise
    t_write = time.perf_counter()
    if accepted or not touched:
        _models[arm.id] = (version, model)
    else:
        _models.pop(arm.id, None)
    timings = {**metrics["timings_ms"], "write": round((t_write - t_ser) * 1e3, 2)}
    more = len(rows.impressions) >= config.batch_rows or len(rows.clicks) >= config.batch_rows
    if accepted:
        log.info(
            "train_step arm=%s version=%s n=%d clicks=%d logloss_before=%.4f loss=%.4f read_ms=%.1f fit_ms=%.1f "
            "serialise_ms=%.1f write_ms=%.1f",
            arm.id, version, rows.n, len(rows.clicks), metrics.get("logloss_before", float("nan")),
            metrics.get("loss", float("nan")), timings["read"], timings["fit"], timings["serialise"], timings["write"],
        )
        return StepResult("trained", version, rows.n, "", more, timings)
    log.warning(
        "train_rejected arm=%s version=%s n=%d imp_from=%s imp_to=%s click_from=%s click_to=%s reason=%r",
        arm.id, version, rows.n, head["cursor"], rows.cursor, head["click_cursor"], rows.click_cursor, reason,
    )
    return StepResult("rejected", version, rows.n, reason, more, timings)


def _insert_copy_of(*, base_version: int, metrics: dict[str, Any], **common: Any) -> None:
    """A new version holding the base version's state, copied inside Postgres (no round trip of the bytes)."""
    table = ModelCheckpoint._meta.db_table
    with connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO {table} (arm_id, version, state, metrics, cursor, click_cursor, examples_seen, created_at) "
            f"SELECT arm_id, %s, state, %s, %s, %s, %s, clock_timestamp() FROM {table} WHERE arm_id = %s AND version = %s",
            [
                common["version"], json.dumps(metrics), common["cursor"], common["click_cursor"],
                common["examples_seen"], common["arm_id"], base_version,
            ],
        )
        if cur.rowcount != 1:
            raise StaleBase(f"base version {base_version} of arm {common['arm_id']} is gone")


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
            if not step.more or time.monotonic() - started >= config.budget_s:
                return run
    finally:
        _unlock(arm_id)


def training_warmup() -> list[int]:
    """Load every trainable arm into this worker and run one prediction: imports TensorFlow and builds the graphs.

    Called when a trainer starts, so that the first real step of a deep arm
    does not stall every other arm behind a 10 s import-and-trace.
    """
    from models.types import Batch

    warmed = []
    for arm in Arm.objects.filter(id__in=training_arm_ids()).select_related("experiment"):
        try:
            head = _head(arm.id)
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


# ---------------------------------------------------------------- dispatch


def _pending_key(arm_id: int) -> str:
    # The database name keeps two deployments (or test runs) on one Redis apart.
    return f"recsite:train:pending:{settings.DATABASES['default']['NAME']}:{arm_id}"


def training_arm_ids() -> list[int]:
    """Arms that may get traffic: active arms of running or concluded experiments."""
    return list(
        Arm.objects.filter(status=Arm.Status.ACTIVE)
        .filter(Q(experiment__status=Experiment.Status.RUNNING) | Q(experiment__status=Experiment.Status.CONCLUDED))
        .order_by("id")
        .values_list("id", flat=True)
    )


def training_dispatch(*, config: TrainingConfig | None = None, queue: str | None = None) -> list[int]:
    """Queue one ``train_arm`` per arm that has none queued yet; returns the arm ids queued.

    A Redis key per arm (cleared when the run starts, expiring in case the task
    is lost with a killed worker) de-duplicates runs while trainers keep up. The
    key expiring does not mean the run left the queue, though: with the trainers
    stalled, each expiry would queue one more run per arm. So an arm is queued
    only while its queue (a Redis list named after it) holds fewer runs than the
    arms routed to it: the training queue stays at most one run per arm deep
    however long training is stalled.
    """
    from experiments.tasks import train_arm

    config = config or TrainingConfig.from_env()
    client = _redis()
    ttl = max(10, int(config.interval_s * 5))
    routes = {arm_id: queue or config.queue_for(arm_id) for arm_id in training_arm_ids()}
    room = {name: list(routes.values()).count(name) - client.llen(name) for name in set(routes.values())}
    queued = []
    for arm_id, name in routes.items():
        if room[name] <= 0:
            continue
        if client.set(_pending_key(arm_id), "1", nx=True, ex=ttl):
            train_arm.apply_async(args=[arm_id], queue=name)
            room[name] -= 1
            queued.append(arm_id)
    full = sorted(name for name, n in room.items() if n <= 0)
    if full:
        log.info("training_dispatch_backlog queues=%s", ",".join(full))
    return queued


def training_pending_clear(*, arm_id: int) -> None:
    try:
        _redis().delete(_pending_key(arm_id))
    except Exception as exc:
        log.warning("train_pending_clear_failed arm=%s error=%s", arm_id, exc)


# ---------------------------------------------------------------- retention


def checkpoint_retention_apply(*, config: TrainingConfig | None = None, arm_id: int | None = None) -> int:
    """Delete checkpoints outside "the last N and every Kth version"; returns how many went.

    The latest version is always among the last N, so serving and training never lose theirs.
    """
    config = config or TrainingConfig.from_env()
    table = ModelCheckpoint._meta.db_table
    sql = (
        f"DELETE FROM {table} c USING (SELECT arm_id, max(version) AS top FROM {table} "
        f"{'WHERE arm_id = %s' if arm_id is not None else ''} GROUP BY arm_id) h "
        "WHERE c.arm_id = h.arm_id AND c.version <= h.top - %s AND c.version %% %s <> 0"
    )
    params = ([arm_id] if arm_id is not None else []) + [config.keep_last, config.keep_every]
    with connection.cursor() as cur:
        cur.execute(sql, params)
        deleted = cur.rowcount
    log.info("checkpoint_retention deleted=%d keep_last=%d keep_every=%d", deleted, config.keep_last, config.keep_every)
    return deleted


# ---------------------------------------------------------------- rollback


def arm_rollback_to_checkpoint(*, arm_id: int, version: int, user: Any, reason: str) -> ModelCheckpoint:
    """Serve and train from a kept checkpoint again: a new version with its state. Staff with promote_arm only.

    The cursors stay where they are: the data since the old version is not
    replayed (it may be what went wrong). The arm is healthy again and the
    decision is audited with the version it replaced.
    """
    from experiments.services.decisions import PERMISSION, DecisionError

    if user is None or not user.is_authenticated or not user.is_staff or not user.has_perm(PERMISSION):
        raise DecisionError("forbidden", "Only staff with the promote_arm permission can roll back a model.", status=403)
    reason = (reason or "").strip()
    if not reason:
        raise DecisionError("reason_required", "Give a reason for the rollback.", field="reason")
    with transaction.atomic():
        with connection.cursor() as cur:
            # Waits for a training run of this arm to finish its step, then keeps trainers out until commit.
            cur.execute("SET LOCAL lock_timeout = '15s'")
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [lock_key(arm_id)])
        arm = Arm.objects.select_for_update(no_key=True).select_related("experiment").filter(pk=arm_id).first()
        if arm is None:
            raise DecisionError("not_found", f"No arm {arm_id}.", field="arm", status=404)
        target = ModelCheckpoint.objects.filter(arm=arm, version=version).first()
        if target is None:
            raise DecisionError("not_found", f"Version {version} of this arm is not kept.", field="version", status=404)
        head = ModelCheckpoint.objects.filter(arm=arm).order_by("-version").defer("state").first()
        baseline = Baseline.from_metrics(target.metrics)
        metrics = {
            "accepted": True,
            "reject_reason": "",
            "rollback_to": version,
            "rollback_from": head.version,
            "base_version": head.version,
            "imp_from": head.cursor,
            "imp_to": head.cursor,
            "click_from": head.click_cursor,
            "click_to": head.click_cursor,
            "n_impressions": 0,
            "n_clicks": 0,
            "n": 0,
            **baseline.as_metrics(),
        }
        new = ModelCheckpoint.objects.create(
            arm=arm,
            version=head.version + 1,
            state=target.state,
            metrics=metrics,
            cursor=head.cursor,
            click_cursor=head.click_cursor,
            examples_seen=target.examples_seen,
        )
        previous = {"version": head.version, "health": arm.health, "health_reason": arm.health_reason}
        arm.health, arm.health_reason = Arm.Health.HEALTHY, ""
        arm.save(update_fields=["health", "health_reason"])
        Decision.objects.create(
            experiment=arm.experiment,
            user=user,
            action=Decision.Action.CHECKPOINT_ROLLBACK,
            arm=arm,
            reason=reason,
            stats_snapshot={"to_version": version, "from_version": head.version, "target_metrics": target.metrics},
            previous_state=previous,
        )
        slug, name, new_version = arm.experiment.slug, arm.name, new.version
        transaction.on_commit(
            lambda: _announce(arm_id=arm_id, slug=slug, arm_name=name, version=new_version, metrics=metrics)
        )
    log.info("checkpoint_rollback arm=%s to_version=%s new_version=%s user=%s", arm_id, version, new.version, user.pk)
    return new
