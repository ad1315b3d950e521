"""Training knobs, read from the environment when a run starts (never at import time)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured


def _float(name: str, default: float, *, lo: float = 0.0) -> float:
    raw = os.environ.get(name, "")
    try:
        value = float(raw) if raw.strip() else default
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from exc
    if not value >= lo:
        raise ImproperlyConfigured(f"{name}={value} must be >= {lo}")
    return value


def _int(name: str, default: int, *, lo: int = 0) -> int:
    return int(_float(name, default, lo=lo))


@dataclass(frozen=True)
class TrainingConfig:
    # Beat wakes the dispatcher this often; each active arm gets at most one queued run.
    interval_s: float = 2.0
    # At most this many impressions, and as many clicks, per mini-batch (= per checkpoint version).
    batch_rows: int = 1024
    # A run keeps taking mini-batches while there is a backlog, for at most this long.
    budget_s: float = 1.5
    # Guardrail: reject a batch whose progressive logloss exceeds factor × the rolling baseline…
    guard_factor: float = 2.0
    # …but only judge batches of at least this many rows, once the arm has learnt from this many rows and
    # batches (a baseline of one or two early batches says little).
    guard_min_rows: int = 100
    guard_warmup_examples: int = 2000
    guard_warmup_batches: int = 5
    # Half-life, in accepted batches, of the rolling baseline logloss and AUC.
    baseline_halflife: float = 10.0
    # How long to wait for in-flight writers of impressions/clicks before reading past them.
    inflight_wait_s: float = 2.0
    # Retention: keep the last N versions and every Kth (each with the chain of deltas it is restored from).
    keep_last: int = 20
    keep_every: int = 100
    # Versions are deltas (changed rows + dense part) on the previous one; a full snapshot every N versions.
    snapshot_every: int = 20
    # A step trains on up to this many pending mini-batches (of batch_rows) and writes them as one version
    # (only a backlog folds; docs/benchmarks.md, Training: 16 against 4 makes catch-up 1.36-1.93x faster).
    fold_batches: int = 16
    # The trainers' queue, and optionally arms spread over <queue>.<arm_id % shards> (0 = the one queue).
    queue: str = "training"
    shards: int = 0
    # Fault injection for the crash test only: sleep this long between partial_fit and commit.
    test_pause_s: float = 0.0

    @classmethod
    def from_env(cls) -> TrainingConfig:
        d = cls()
        return cls(
            interval_s=_float("RECSITE_TRAIN_INTERVAL_S", d.interval_s, lo=0.05),
            batch_rows=_int("RECSITE_TRAIN_BATCH_ROWS", d.batch_rows, lo=1),
            budget_s=_float("RECSITE_TRAIN_BUDGET_S", d.budget_s),
            guard_factor=_float("RECSITE_TRAIN_GUARD_FACTOR", d.guard_factor, lo=1.0),
            guard_min_rows=_int("RECSITE_TRAIN_GUARD_MIN_ROWS", d.guard_min_rows),
            guard_warmup_examples=_int("RECSITE_TRAIN_GUARD_WARMUP", d.guard_warmup_examples),
            guard_warmup_batches=_int("RECSITE_TRAIN_GUARD_WARMUP_BATCHES", d.guard_warmup_batches),
            baseline_halflife=_float("RECSITE_TRAIN_BASELINE_HALFLIFE", d.baseline_halflife, lo=1.0),
            inflight_wait_s=_float("RECSITE_TRAIN_INFLIGHT_WAIT_S", d.inflight_wait_s),
            keep_last=_int("RECSITE_CHECKPOINT_KEEP_LAST", d.keep_last, lo=1),
            keep_every=_int("RECSITE_CHECKPOINT_KEEP_EVERY", d.keep_every, lo=1),
            snapshot_every=_int("RECSITE_CHECKPOINT_SNAPSHOT_EVERY", d.snapshot_every, lo=1),
            fold_batches=_int("RECSITE_TRAIN_FOLD_BATCHES", d.fold_batches, lo=1),
            queue=os.environ.get("RECSITE_TRAIN_QUEUE", "").strip() or d.queue,
            shards=_int("RECSITE_TRAIN_SHARDS", d.shards),
            test_pause_s=_float("RECSITE_TEST_TRAIN_PAUSE", d.test_pause_s),
        )

    def queue_for(self, arm_id: int) -> str:
        return f"{self.queue}.{arm_id % self.shards}" if self.shards > 0 else self.queue

    def queues(self) -> list[str]:
        """Every queue :meth:`queue_for` can name: the trainers' queue, or its shards."""
        return [f"{self.queue}.{s}" for s in range(self.shards)] if self.shards > 0 else [self.queue]
