"""Shadow (apprentice) arms on the serve path: rank every served request again with each shadow arm, off the
request's critical path.

:func:`shadow_submit` puts the request (the user's context, the shown slate and its logged propensities) on a
bounded in-process queue and returns at once; one daemon thread per serving process ranks it with every shadow
arm of the experiment and writes one :class:`~experiments.models.ShadowImpression` per shown item in a single
statement: the shadow's own item and score at that position, and the shadow's exact probability
(``propensity_matrix``) of the item that was shown there. A full queue drops the request (counted in
``recsite_shadow_dropped``), so a shadow arm can never slow serving down or take it down; its estimates then
rest on fewer rows, which their ESS shows. Training and the dashboard read these rows
(services/shadow_training.py, selectors/shadow.py).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import close_old_connections, connection

from experiments.services import sessions

log = logging.getLogger(__name__)

QUEUE_SIZE = 2_000

_INSERT_SQL = """
INSERT INTO experiments_shadowimpression
    (arm_id, experiment_id, served_arm_id, impression_id, request_id, user_id, item_id, position,
     logged_propensity, target_propensity, shadow_item_id, shadow_score, model_version, hist_clicked, hist_impressed,
     created_at)
SELECT t.arm_id, %(experiment_id)s, %(served_arm_id)s, t.impression_id, %(request_id)s::uuid, %(user_id)s, t.item_id,
       t.position, t.logged, t.target, t.shadow_item, t.shadow_score, t.version, %(hist_clicked)s::bigint[],
       %(hist_impressed)s::bigint[], now()
FROM unnest(%(arms)s::bigint[], %(impressions)s::bigint[], %(items)s::bigint[], %(positions)s::int[],
            %(logged)s::float8[], %(target)s::float8[], %(shadow_items)s::bigint[], %(shadow_scores)s::float8[],
            %(versions)s::int[]) AS t(arm_id, impression_id, item_id, position, logged, target, shadow_item,
                                      shadow_score, version)
ON CONFLICT (impression_id, arm_id) DO NOTHING
"""


@dataclass(frozen=True)
class ShadowJob:
    experiment_id: int
    slug: str
    shadow_arm_ids: tuple[int, ...]
    served_arm_id: int
    request_id: str
    user_id: str
    user_pk: int
    attributes: dict[str, Any]
    session: sessions.Session
    catalogue: Any  # the snapshot's Catalogue the served arm ranked
    shown: np.ndarray  # candidate indices of the shown slate, in slot order
    logged: np.ndarray  # the served arm's propensities of them
    impression_ids: list[int]


def shadow_rows(job: ShadowJob, models: dict[int, Any], rng: np.random.Generator) -> dict[str, list]:
    """The insert's columns for every shadow arm loaded in ``models`` (arm id → LoadedModel)."""
    from experiments.services.shoppers import rank_context

    k = int(job.shown.shape[0])
    cols: dict[str, list] = {name: [] for name in ("arms", "impressions", "items", "positions", "logged", "target",
                                                   "shadow_items", "shadow_scores", "versions")}
    for arm_id in job.shadow_arm_ids:
        loaded = models.get(arm_id)
        if loaded is None:
            continue
        model = loaded.model
        session = job.session if getattr(model, "uses_session", False) else sessions.EMPTY
        ctx = rank_context(model=model, user_id=job.user_id, attributes=job.attributes, catalogue=job.catalogue,
                           session=session)
        own = model.rank(ctx, k, rng)
        matrix = model.propensity_matrix(ctx, k)  # [n, k]: P(candidate i in slot j) under the shadow's policy
        target = np.clip(matrix[job.shown, np.arange(k)], 0.0, 1.0)
        cols["arms"] += [arm_id] * k
        cols["impressions"] += job.impression_ids
        cols["items"] += job.catalogue.pks[job.shown].tolist()
        cols["positions"] += list(range(1, k + 1))
        cols["logged"] += np.clip(job.logged, 1e-300, 1.0).tolist()
        cols["target"] += target.tolist()
        cols["shadow_items"] += job.catalogue.pks[np.asarray(own.indices, dtype=np.int64)].tolist()
        cols["shadow_scores"] += np.nan_to_num(np.asarray(own.scores, dtype=np.float64), nan=0.0, posinf=1e300,
                                               neginf=-1e300).tolist()
        cols["versions"] += [loaded.version] * k
    return cols


def shadow_write(job: ShadowJob, cols: dict[str, list]) -> int:
    if not cols["arms"]:
        return 0
    params = {"experiment_id": job.experiment_id, "served_arm_id": job.served_arm_id, "request_id": job.request_id,
              "user_id": job.user_pk, "hist_clicked": list(job.session.clicked) or None,
              "hist_impressed": list(job.session.impressed) or None, **cols}
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_SQL, params)
        return cursor.rowcount


class ShadowRecorder:
    """The queue and its worker thread (started on the first job)."""

    def __init__(self, size: int = QUEUE_SIZE, seed: int = 20261203) -> None:
        self._queue: queue.Queue[ShadowJob] = queue.Queue(maxsize=size)
        self._rng = np.random.default_rng(seed)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.written = 0
        self.dropped = 0

    def submit(self, job: ShadowJob) -> bool:
        self._ensure_thread()
        try:
            self._queue.put_nowait(job)
            return True
        except queue.Full:
            from experiments.observability import SHADOW_DROPPED

            self.dropped += 1
            SHADOW_DROPPED.labels(job.slug).inc()
            return False

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="shadow-arms", daemon=True)
                self._thread.start()

    def process(self, job: ShadowJob) -> int:
        """Ranks and writes one job now (the worker's step; tests call it directly)."""
        from experiments.serving.cache import serving_cache

        state = serving_cache.current()
        return shadow_write(job, shadow_rows(job, state.models, self._rng))

    def drain(self, timeout: float = 10.0) -> bool:
        """Waits until every submitted job is processed (tests, shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                close_old_connections()
                self.written += self.process(job)
            except Exception:
                log.exception("shadow_rank_failed experiment=%s request=%s", job.slug, job.request_id)
                connection.close()
            finally:
                if self._queue.empty():
                    connection.close()  # idle: hold no connection (a reconnect costs ~1 ms when work resumes)
                self._queue.task_done()


shadow_recorder = ShadowRecorder()


def shadow_submit(job: ShadowJob) -> bool:
    """Queues the job (``RECSITE["SHADOW_INLINE"]``: processes it now, in the request's own transaction, as the
    in-process tests need: a thread's connection cannot see a test's uncommitted rows)."""
    from django.conf import settings

    if settings.RECSITE.get("SHADOW_INLINE"):
        shadow_recorder.written += shadow_recorder.process(job)
        return True
    return shadow_recorder.submit(job)
