"""The per-process serving state: experiments, loaded arm models and the catalogue matrix.

Requests read one immutable :class:`ServingState` snapshot (a single attribute
read, no lock, no query). A background thread rebuilds it: one query for the
experiments, their arms and each arm's newest checkpoint version, one for a
catalogue stamp. It runs when a new version is **announced** on Redis
(:class:`experiments.serving.versions.VersionSubscriber`, started with the thread,
lazily, in each process) and, as a fallback, every ``SERVING_POLL_SUBSCRIBED_S``
(5 s) while subscribed or every ``SERVING_POLL_S`` (0.25 s) while the
subscription is down. An arm whose version moved fetches only the deltas after
the version it serves (:func:`experiments.services.checkpoints.checkpoint_model`),
or its newest snapshot chain when it is too far behind or cold. Anything slow —
applying deltas, deserialising a snapshot, building an arm, re-featurising the
catalogue — happens in that thread, and the new snapshot is swapped in by one
assignment, so requests never wait for a reload and always report the version
that served them. A checkpoint that does not load is logged and skipped; the arm
keeps serving the version it had.

The thread, the subscriber and the locks belong to one process: after a fork
(pre-fork servers) the child resets them and starts its own on first use.

``RECSITE["SERVING_REFRESH"] = "inline"`` refreshes synchronously on every read
instead of in a thread: tests run inside a transaction the thread could not see.
``"manual"`` refreshes only when :meth:`ServingCache.refresh` is called (tests that
play several serving processes, with the per-process caches on).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time

import numpy as np
from django.conf import settings
from django.db import connection

from experiments import features
from experiments.services.checkpoints import checkpoint_model
from experiments.serving.arms import arm_build
from experiments.serving.snapshot import (
    Catalogue,
    ConfigRow,
    LoadedModel,
    ServedExperiment,
    ServingState,
    catalogue_load,
    catalogue_stamp,
    config_read,
    experiments_from_rows,
    model_signature,
)
from experiments.serving.versions import VersionSubscriber
from experiments.serving.warmup import model_warm

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.25
FIRST_LOAD_TIMEOUT_S = 60.0
# How many older versions to try when a process starts on a corrupt newest checkpoint.
FALLBACK_VERSIONS = 3


class ServingCache:
    def __init__(self, poll_interval_s: float | None = None, subscribed_poll_s: float | None = None) -> None:
        self._poll_interval_s = poll_interval_s
        self._subscribed_poll_s = subscribed_poll_s
        self._state: ServingState | None = None
        self._last_error: Exception | None = None
        self._bad: set[tuple[int, int]] = set()  # (arm_id, version) that failed to load
        self._ready = threading.Event()  # set once a refresh has loaded and warmed every arm
        # Shadow arms' models are loaded only where they rank: the shadow drain (shadow_models_on), or any process
        # when RECSITE["SHADOW_INLINE"] ranks them in the request. A web process never ranks with them, so it does
        # not load, warm or hot-reload them (each version a shadow arm learns would otherwise cost every web
        # process a checkpoint load and a warm-up beside its requests).
        self.shadow_models = False
        self._process_reset()
        os.register_at_fork(after_in_child=self._process_reset)

    def _process_reset(self) -> None:
        """Fresh locks, events, thread and subscriber: this process's own (also run in a forked child)."""
        self._refresh_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._attempted = threading.Event()
        self.subscriber = VersionSubscriber(on_version=self._announced, on_connect=self._wake.set)
        self.wakeups = 0

    @property
    def poll_interval_s(self) -> float:
        """The fallback poll interval now: slow while subscribed to announcements, fast otherwise."""
        if self.subscriber.connected:
            return self._subscribed_poll_s or float(settings.RECSITE.get("SERVING_POLL_SUBSCRIBED_S", 5.0))
        return self._poll_interval_s or float(settings.RECSITE.get("SERVING_POLL_S", POLL_INTERVAL_S))

    def _with_shadow(self) -> bool:
        return self.shadow_models or bool(settings.RECSITE.get("SHADOW_INLINE"))

    def shadow_models_on(self) -> ServingState:
        """This process ranks with shadow arms (the shadow drain): load them from now on."""
        if not self.shadow_models:
            self.shadow_models = True
            return self.refresh()
        return self.current()

    def _announced(self, arm_id: int, version: int) -> None:
        if arm_id == 0:  # a configuration change: always refresh
            self.wakeups += 1
            self._wake.set()
            return
        state = self._state
        if state is not None and not self._with_shadow() and any(
                arm_id in e.shadow_arm_ids for e in state.experiments.values()):
            return  # a shadow arm's new version: this process does not rank with it
        loaded = state.models.get(arm_id) if state is not None else None
        if loaded is not None and loaded.version >= version:
            return
        if state is not None and loaded is None and arm_id not in state.pending and not any(
            arm_id in e.arms for e in state.experiments.values()
        ):
            return  # an arm this process does not serve (another experiment's, or another deployment's)
        self.wakeups += 1
        self._wake.set()

    # ------------------------------------------------------------------ reads
    def catalogue_fresh(self) -> ServingState:
        """The current state, its catalogue re-read first when it is empty here but not in the database.

        Items posted a moment ago reach this process with the announcement's refresh; a client that asks at
        once may come first (the learning race saw it in 1 of ~7,000 requests), and an empty catalogue is
        refused with "POST /api/v1/items first". So before refusing, one query compares the catalogue's stamp.
        Called only while the served catalogue is empty.
        """
        state = self.current()
        with self._refresh_lock:  # after a refresh in flight, and never beside one publishing an older catalogue
            state = self._state or state
            if state.catalogue.n > 0:
                return state
            stamp = catalogue_stamp()
            if stamp == state.catalogue.stamp:
                return state
            log.info("serving_catalogue_reread stamp=%s", stamp)
            return self._publish(state.experiments, state.models, catalogue_load(stamp), set(state.pending))

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
        self.subscriber.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self.subscriber.stop()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                self._wake.clear()
                try:
                    self.refresh()
                    self._last_error = None
                except Exception as exc:  # a dead database must not kill the poller
                    self._last_error = exc
                    log.warning("serving_refresh_failed error=%s", f"{type(exc).__name__}: {exc}".strip())
                    connection.close()
                self._attempted.set()
                # An announcement (or stop) wakes the loop at once; otherwise the fallback poll.
                self._wake.wait(max(0.0, self.poll_interval_s - (time.monotonic() - started)))
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
            config_rows, stamp = config_read()
            experiments = experiments_from_rows(config_rows)
            catalogue = previous.catalogue if previous is not None and previous.catalogue.stamp == stamp else None
            if catalogue is None:
                catalogue = catalogue_load(stamp)
            shadow = self._with_shadow()
            wanted = [row for row in config_rows if (row.arm_status != "retired" or row.arm_id == row.winner_id)
                      and (shadow or row.arm_status != "shadow")]
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
        signature = model_signature(kind, params)
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
                # Only the deltas after the version serving now, when the target's chain runs through it.
                model = checkpoint_model(arm_id=arm_id, kind=kind, version=version,
                                         have=have.model if have is not None else None,
                                         have_version=have.version if have is not None else 0)
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


serving_cache = ServingCache()
