"""The per-process serving state: experiments, loaded arm models and the catalogue matrix.

Requests read one immutable :class:`ServingState` snapshot (a single attribute
read, no lock, no query). A background thread rebuilds it every
``POLL_INTERVAL_S``: one query for the experiments, their arms and each arm's
newest checkpoint version, one for a catalogue stamp. Anything slow —
deserialising a checkpoint, building an arm, re-featurising the catalogue —
happens in that thread, and the new snapshot is swapped in by one assignment,
so requests never wait for a reload and always report the version that served
them. A checkpoint that does not load is logged and skipped; the arm keeps
serving the version it had.

``RECSITE["SERVING_REFRESH"] = "inline"`` refreshes synchronously on every read
instead of in a thread: tests run inside a transaction the thread could not see.
``"manual"`` refreshes only when :meth:`ServingCache.refresh` is called (tests that
play several serving processes, with the per-process caches on).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from django.conf import settings
from django.db import connection

from experiments import features
from experiments.services.assignment import ArmSlot, Layout, layout_of
from experiments.serving.arms import arm_build, arm_restore
from experiments.serving.warmup import model_warm
from models.base import Arm

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.25
FIRST_LOAD_TIMEOUT_S = 60.0
# How many older versions to try when a process starts on a corrupt newest checkpoint.
FALLBACK_VERSIONS = 3


@dataclass(frozen=True)
class ServedArm:
    id: int
    name: str
    kind: str
    params: dict[str, Any]
    weight: float
    status: str


@dataclass(frozen=True)
class ServedExperiment:
    id: int
    slug: str
    salt: str
    status: str
    winner_id: int | None
    allocation_epoch: int
    started_at: float
    arms: dict[int, ServedArm]
    # Sticky assignment's view of the configuration (services/assignment.py).
    layout: Layout


@dataclass
class LoadedModel:
    arm_id: int
    signature: str
    version: int
    model: Arm
    rng: np.random.Generator
    loaded_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Catalogue:
    stamp: tuple
    pks: np.ndarray  # int64 [n] Item.id
    keys: np.ndarray  # int64 [n] features.external_key(external_id)
    external_ids: list[str]
    rows: list[tuple[str, Any, dict]]  # (category, price, features) for featurising
    feats: dict[int, np.ndarray]  # item_dim -> float32 [n, item_dim]

    @property
    def n(self) -> int:
        return int(self.pks.shape[0])


EMPTY_CATALOGUE = Catalogue((), np.zeros(0, np.int64), np.zeros(0, np.int64), [], [], {})


@dataclass(frozen=True)
class ServingState:
    experiments: dict[str, ServedExperiment]
    models: dict[int, LoadedModel]
    catalogue: Catalogue
    refreshed_at: float
    # Arms whose model is still being built or loaded by the refresh in progress.
    pending: frozenset[int] = frozenset()

    def default_experiment(self) -> ServedExperiment | None:
        running = [e for e in self.experiments.values() if e.status == "running"]
        if len(running) == 1:
            return running[0]
        if running:
            return None
        # Concluded (winner) or stopped (control) experiments still serve, the newest first.
        concluded = sorted((e for e in self.experiments.values()), key=lambda e: e.started_at, reverse=True)
        return concluded[0] if concluded else None

    def running_count(self) -> int:
        return sum(1 for e in self.experiments.values() if e.status == "running")


class ConfigRow(NamedTuple):
    """One row of :data:`_CONFIG_SQL`: an arm of a running or concluded experiment."""

    experiment_id: int
    slug: str
    salt: str
    status: str
    winner_id: int | None
    allocation_epoch: int
    started_at: float | None
    control_arm_id: int | None
    arm_id: int
    arm_name: str
    kind: str
    params_text: str | None
    weight: float
    arm_status: str
    newest_version: int | None


_CONFIG_SQL = """
SELECT e.id, e.slug, e.salt, e.status, e.winner_id, e.allocation_epoch,
       EXTRACT(EPOCH FROM COALESCE(e.started_at, e.created_at))::float8, e.control_arm_id,
       a.id, a.name, a.kind, a.params::text, a.weight, a.status,
       (SELECT max(c.version) FROM experiments_modelcheckpoint c WHERE c.arm_id = a.id)
FROM experiments_experiment e
JOIN experiments_arm a ON a.experiment_id = e.id
WHERE e.status IN ('running', 'concluded', 'stopped')
ORDER BY e.id, a.id
"""

# Cheap enough to run four times a second on a 10k-item catalogue, and it moves on
# every kind of change: insert (max id), update (max updated_at), deactivation (count).
_CATALOGUE_STAMP_SQL = """
SELECT count(*) FILTER (WHERE active), max(updated_at), max(id), count(*) FROM experiments_item
"""

_CATALOGUE_SQL = """
SELECT id, external_id, category, price, features::text FROM experiments_item WHERE active ORDER BY id
"""


def _signature(kind: str, params: dict) -> str:
    return kind + ":" + json.dumps(params, sort_keys=True)


class ServingCache:
    def __init__(self, poll_interval_s: float = POLL_INTERVAL_S) -> None:
        self.poll_interval_s = poll_interval_s
        self._state: ServingState | None = None
        self._refresh_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._attempted = threading.Event()
        self._last_error: Exception | None = None
        self._bad: set[tuple[int, int]] = set()  # (arm_id, version) that failed to load
        self._ready = threading.Event()  # set once a refresh has loaded and warmed every arm

    # ------------------------------------------------------------------ reads
    def current(self) -> ServingState:
        mode = settings.RECSITE.get("SERVING_REFRESH", "background")
        if mode == "inline":
            return self.refresh()
        if mode == "manual":
            return self._state or self.refresh()
        state = self._state
        if state is not None:
            return state
        self.start()
        self._attempted.wait(FIRST_LOAD_TIMEOUT_S)
        state = self._state
        if state is not None:
            return state
        if self._last_error is not None:
            # Typically OperationalError: the caller answers 503 at once instead of hanging.
            raise self._last_error
        raise TimeoutError("serving state did not load")

    @property
    def started(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def failing(self) -> bool:
        """The last background refresh failed (typically: the database is down)."""
        return self._last_error is not None

    @property
    def ready(self) -> bool:
        """Every arm of the first complete refresh is loaded and warmed (``/healthz`` says ``warming`` until then)."""
        return self._ready.is_set()

    # ----------------------------------------------------------- background
    def start(self) -> None:
        with self._start_lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="serving-cache", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    self.refresh()
                    self._last_error = None
                except Exception as exc:  # a dead database must not kill the poller
                    self._last_error = exc
                    log.warning("serving_refresh_failed error=%s", f"{type(exc).__name__}: {exc}".strip())
                    connection.close()
                self._attempted.set()
                self._stop.wait(max(0.0, self.poll_interval_s - (time.monotonic() - started)))
        finally:
            connection.close()

    # --------------------------------------------------------------- refresh
    def refresh(self) -> ServingState:
        """Rebuild the snapshot from the database; returns the new state.

        While arms are being built or loaded, a snapshot is published after each one, so a slow arm
        (the first TensorFlow arm imports TensorFlow) never holds up the others; its arm id is in
        ``pending`` until it is ready.
        """
        with self._refresh_lock:
            previous = self._state
            with connection.cursor() as cursor:
                cursor.execute(_CONFIG_SQL)
                config_rows = [ConfigRow(*row) for row in cursor.fetchall()]
                cursor.execute(_CATALOGUE_STAMP_SQL)
                stamp = tuple(cursor.fetchone())
            experiments = _experiments_from_rows(config_rows)
            catalogue = previous.catalogue if previous is not None and previous.catalogue.stamp == stamp else None
            if catalogue is None:
                catalogue = _catalogue_load(stamp)
            wanted = [row for row in config_rows if row.arm_status != "retired" or row.arm_id == row.winner_id]
            old_models = previous.models if previous else {}
            models = {row.arm_id: old_models[row.arm_id] for row in wanted if row.arm_id in old_models}
            pending = {row.arm_id for row in wanted if row.arm_id not in models}
            state = self._publish(experiments, models, catalogue, pending)
            for row in wanted:
                loaded = self._model_refresh(row, models.get(row.arm_id))
                if loaded is not None and loaded is not models.get(row.arm_id):
                    # Warmed before it is published: the version serving now keeps serving meanwhile.
                    model_warm(loaded=loaded, catalogue=state.catalogue)
                    models[row.arm_id] = loaded
                    pending.discard(row.arm_id)
                    state = self._publish(experiments, models, state.catalogue, pending)
                pending.discard(row.arm_id)
            state = self._publish(experiments, models, state.catalogue, pending)
            self._ready.set()
            return state

    def _publish(self, experiments: dict[str, ServedExperiment], models: dict[int, LoadedModel],
                 catalogue: Catalogue, pending: set[int]) -> ServingState:
        dims = {int(m.model.params["item_dim"]) for m in models.values()}
        missing = dims - set(catalogue.feats)
        if missing:
            feats = dict(catalogue.feats)
            for dim in missing:
                feats[dim] = features.item_matrix(catalogue.rows, dim=dim)
            catalogue = Catalogue(catalogue.stamp, catalogue.pks, catalogue.keys, catalogue.external_ids,
                                  catalogue.rows, feats)
        state = ServingState(experiments, dict(models), catalogue, time.time(), frozenset(pending))
        self._state = state
        self._attempted.set()
        return state

    def model_wait(self, arm_id: int, timeout: float = FIRST_LOAD_TIMEOUT_S) -> ServingState:
        """The first snapshot in which ``arm_id`` is no longer pending (its model loaded or failed)."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.current()
            if arm_id not in state.pending or time.monotonic() >= deadline:
                return state
            time.sleep(0.05)

    def _model_refresh(self, row: ConfigRow, old: LoadedModel | None) -> LoadedModel | None:
        arm_id, kind, params_text, newest = row.arm_id, row.kind, row.params_text, row.newest_version
        params = json.loads(params_text) if params_text else {}
        signature = _signature(kind, params)
        if old is not None and old.signature != signature:
            old = None
        target = int(newest or 0)
        if old is not None and (old.version >= target or (arm_id, target) in self._bad):
            return old
        return self._model_load(arm_id=arm_id, kind=kind, params=params, signature=signature, target=target,
                                have=old)

    def _model_load(
        self, *, arm_id: int, kind: str, params: dict, signature: str, target: int, have: LoadedModel | None
    ) -> LoadedModel | None:
        # Newest first, down to the version already serving; a process starting on a corrupt newest
        # checkpoint falls back a few versions, then to a fresh arm.
        floor = have.version if have is not None else max(0, target - FALLBACK_VERSIONS)
        for version in range(target, floor, -1):
            if (arm_id, version) in self._bad:
                continue
            try:
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT state FROM experiments_modelcheckpoint WHERE arm_id = %s AND version = %s",
                        [arm_id, version],
                    )
                    row = cursor.fetchone()
                if row is None:
                    raise LookupError("checkpoint row vanished")
                model = arm_restore(kind=kind, state=row[0])
            except Exception as exc:
                self._bad.add((arm_id, version))
                log.error("checkpoint_load_failed arm=%s version=%s error=%s", arm_id, version,
                          f"{type(exc).__name__}: {exc}".strip())
                continue
            log.info("model_loaded arm=%s version=%s kind=%s", arm_id, version, kind)
            return LoadedModel(arm_id, signature, version, model, np.random.default_rng())
        if have is not None:
            return have
        try:
            model = arm_build(kind=kind, params=params, arm_id=arm_id)
        except Exception as exc:
            log.error("arm_build_failed arm=%s kind=%s error=%s", arm_id, kind, f"{type(exc).__name__}: {exc}".strip())
            return None
        return LoadedModel(arm_id, signature, 0, model, np.random.default_rng())


def _experiments_from_rows(rows: list[ConfigRow]) -> dict[str, ServedExperiment]:
    grouped: dict[int, list[ConfigRow]] = {}
    for row in rows:
        grouped.setdefault(row.experiment_id, []).append(row)
    out: dict[str, ServedExperiment] = {}
    for exp_rows in grouped.values():
        first = exp_rows[0]
        arms = {
            r.arm_id: ServedArm(r.arm_id, r.arm_name, r.kind, json.loads(r.params_text) if r.params_text else {},
                                float(r.weight), r.arm_status)
            for r in exp_rows
        }
        override = {"concluded": first.winner_id, "stopped": first.control_arm_id}.get(first.status)
        layout = layout_of(arms=[ArmSlot(a.id, a.weight, a.status) for a in arms.values()], override=override)
        out[first.slug] = ServedExperiment(
            id=first.experiment_id, slug=first.slug, salt=first.salt, status=first.status, winner_id=first.winner_id,
            allocation_epoch=first.allocation_epoch, started_at=float(first.started_at or 0.0), arms=arms,
            layout=layout,
        )
    return out


def _catalogue_load(stamp: tuple) -> Catalogue:
    with connection.cursor() as cursor:
        cursor.execute(_CATALOGUE_SQL)
        rows = cursor.fetchall()
    if not rows:
        return Catalogue(stamp, np.zeros(0, np.int64), np.zeros(0, np.int64), [], [], {})
    pks = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    external_ids = [r[1] for r in rows]
    feature_rows = [(r[2], r[3], json.loads(r[4]) if r[4] else {}) for r in rows]
    return Catalogue(stamp, pks, features.external_keys(external_ids), external_ids, feature_rows, {})


serving_cache = ServingCache()
