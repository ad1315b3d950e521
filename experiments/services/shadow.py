"""Shadow (apprentice) arms on the serve path: every served A/B request is ranked again by each shadow arm, by
the light worker, never by the web process.

:func:`shadow_submit` appends the request (user, attributes, session, the shown slate's item ids and logged
propensities, its impression ids) to a bounded Redis list in one round trip, after the response's impressions
are written; the list keeps the newest :data:`QUEUE_LIMIT` requests, and while Redis is unreachable requests are
dropped (counted in ``recsite_shadow_dropped``) without waiting on it again for :data:`BREAKER_S`. So a shadow
arm can neither slow serving down nor take it down; its estimates then rest on fewer rows, which their ESS
shows. The light worker starts :func:`shadow_process_start` when it is ready: a child process
(``manage.py shadow_drain``) at the lowest CPU priority, in a scheduling group of its own (nice 19 for the
process and for its autogroup: Linux compares nice values only inside one autogroup, so a thread's or a
process's nice alone would not yield to the web processes), so serving on the same cores takes precedence and
the shadow uses what is idle, and before each batch it waits while the rest of the machine is busy
(:func:`yield_to_serving`); under saturation it falls behind and the list keeps the newest requests. It pops
the list in batches, ranks them with every shadow arm of their experiment on its own serving snapshot, a few
requests per model call, and writes one
:class:`~experiments.models.ShadowRanking` per request and shadow arm, one statement per batch: slot by slot,
the shadow's own item and score, and its exact probability (``propensity_matrix``) of the item that *was*
shown there. Training and the dashboard read these rows (services/shadow_training.py, selectors/shadow.py).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis
from django.conf import settings
from django.db import close_old_connections, connection

from experiments.redis_clients import redis_for
from experiments.services import sessions

log = logging.getLogger(__name__)

QUEUE_LIMIT = 20_000
BREAKER_S = 5.0
BATCH = 64
# Requests × candidates per model call. Measured with deep_ctr over 1,000 items (one thread): 0.28 ms a request at
# 4 requests a call, 0.57 ms one by one, 0.48 ms at 64 (its hidden layer, cells × 256 floats, then leaves the cache).
CHUNK_CELLS = 4_096

# One row per request and shadow arm; the per-slot arrays travel as comma-joined text (a batch is one statement,
# and unnest cannot take arrays of ragged arrays).
_INSERT_SQL = """
INSERT INTO experiments_shadowranking
    (arm_id, experiment_id, served_arm_id, request_id, user_id, impression_ids, items, logged_propensities,
     target_propensities, shadow_items, shadow_scores, model_version, hist_clicked, hist_impressed, created_at)
SELECT t.arm_id, t.experiment_id, t.served_arm_id, t.request_id::uuid, t.user_id,
       string_to_array(t.impressions, ',')::bigint[], string_to_array(t.items, ',')::bigint[],
       string_to_array(t.logged, ',')::float8[], string_to_array(t.target, ',')::float8[],
       string_to_array(t.shadow_items, ',')::bigint[], string_to_array(t.shadow_scores, ',')::float8[], t.version,
       NULLIF(string_to_array(t.hist_clicked, ','), '{}')::bigint[],
       NULLIF(string_to_array(t.hist_impressed, ','), '{}')::bigint[], now()
FROM unnest(%(arms)s::bigint[], %(experiments)s::bigint[], %(served)s::bigint[], %(requests)s::text[],
            %(users)s::bigint[], %(impressions)s::text[], %(items)s::text[], %(logged)s::text[], %(target)s::text[],
            %(shadow_items)s::text[], %(shadow_scores)s::text[], %(versions)s::int[], %(hist_clicked)s::text[],
            %(hist_impressed)s::text[])
     AS t(arm_id, experiment_id, served_arm_id, request_id, user_id, impressions, items, logged, target,
          shadow_items, shadow_scores, version, hist_clicked, hist_impressed)
ON CONFLICT (arm_id, request_id) DO NOTHING
"""
_COLUMNS = ("arms", "experiments", "served", "requests", "users", "impressions", "items", "logged", "target",
            "shadow_items", "shadow_scores", "versions", "hist_clicked", "hist_impressed")


def _joined(values) -> str:
    return ",".join(map(repr, values)) if values and isinstance(values[0], float) else ",".join(map(str, values))


@dataclass(frozen=True)
class ShadowJob:
    """One served request, as the queue carries it (JSON)."""

    experiment_id: int
    slug: str
    shadow_arm_ids: tuple[int, ...]
    served_arm_id: int
    request_id: str
    user_id: str
    user_pk: int
    attributes: dict[str, Any]
    session: sessions.Session
    items: tuple[int, ...]  # Item ids of the shown slate, in slot order
    logged: tuple[float, ...]  # the served arm's propensities of them
    impression_ids: tuple[int, ...]

    def encode(self) -> str:
        return json.dumps([self.experiment_id, self.slug, list(self.shadow_arm_ids), self.served_arm_id,
                           self.request_id, self.user_id, self.user_pk, self.attributes, list(self.session.clicked),
                           list(self.session.impressed), list(self.items), list(self.logged),
                           list(self.impression_ids)], separators=(",", ":"))

    @classmethod
    def decode(cls, text: str | bytes) -> ShadowJob:
        e, slug, arms, served, request, user, pk, attrs, clicked, impressed, items, logged, imps = json.loads(text)
        return cls(e, slug, tuple(arms), served, request, user, pk, attrs, sessions.Session(tuple(clicked),
                   tuple(impressed)), tuple(items), tuple(logged), tuple(imps))


def queue_key() -> str:
    # The database name keeps two deployments (or test runs) on one Redis apart.
    return f"recsite:shadow:{settings.DATABASES['default']['NAME']}"


_broken_until = 0.0
_lock = threading.Lock()


def _dropped(slug: str, n: int = 1) -> None:
    from experiments.observability import SHADOW_DROPPED

    SHADOW_DROPPED.labels(slug).inc(n)


def shadow_submit(job: ShadowJob) -> bool:
    """Queues the request for its shadow arms (``RECSITE["SHADOW_INLINE"]``: ranks it now, in the caller's
    transaction, as the in-process tests need). False when it was dropped."""
    global _broken_until
    if settings.RECSITE.get("SHADOW_INLINE"):
        from experiments.serving.cache import serving_cache

        shadow_write(shadow_rows([job], serving_cache.current(), np.random.default_rng(0)))
        return True
    if time.monotonic() < _broken_until:
        _dropped(job.slug)
        return False
    try:
        pipe = redis_for(0.25).pipeline(transaction=False)
        pipe.rpush(queue_key(), job.encode())
        pipe.ltrim(queue_key(), -QUEUE_LIMIT, -1)  # the newest requests win when the worker falls behind
        pipe.execute()
        return True
    except redis.RedisError as exc:
        with _lock:
            _broken_until = time.monotonic() + BREAKER_S
        log.warning("shadow_queue_unavailable error=%s", exc)
        _dropped(job.slug)
        return False


def shadow_rows(jobs: list[ShadowJob], state: Any, rng: np.random.Generator) -> dict[str, list]:
    """The insert's columns for these requests, from every shadow arm loaded in the serving snapshot ``state``.
    Requests are ranked a shadow arm at a time, :data:`CHUNK_CELLS` (requests × candidates) per model call
    (``rank_many_against``: one scoring pass for many requests). A request whose shown items left the catalogue
    meanwhile is skipped."""
    catalogue = state.catalogue
    groups: dict[tuple[int, int], list[tuple[ShadowJob, np.ndarray]]] = {}
    for job in jobs:
        k = len(job.items)
        shown = np.searchsorted(catalogue.pks, np.asarray(job.items, dtype=np.int64))
        if k == 0 or shown.max(initial=0) >= catalogue.n or not np.array_equal(catalogue.pks[shown], job.items):
            continue
        for arm_id in job.shadow_arm_ids:
            if arm_id in state.models:
                groups.setdefault((arm_id, k), []).append((job, shown))
    cols: dict[str, list] = {name: [] for name in _COLUMNS}
    step = max(1, CHUNK_CELLS // max(catalogue.n, 1))
    for (arm_id, _k), members in groups.items():
        for start in range(0, len(members), step):
            _rank_part(cols, arm_id, state.models[arm_id], members[start:start + step], catalogue, rng)
    return cols


def _rank_part(cols: dict[str, list], arm_id: int, loaded: Any, part: list[tuple[ShadowJob, np.ndarray]],
               catalogue: Any, rng: np.random.Generator) -> None:
    from experiments.services.shoppers import rank_context
    from models.types import Users

    model = loaded.model
    tracked = getattr(model, "uses_session", False)
    sessions_of = [job.session if tracked else sessions.EMPTY for job, _ in part]
    ctxs = [rank_context(model=model, user_id=job.user_id, attributes=job.attributes, catalogue=catalogue,
                         session=session) for (job, _), session in zip(part, sessions_of, strict=True)]
    users = Users(np.array([c.user_key for c in ctxs], np.int64), np.stack([c.user_feats for c in ctxs]),
                  np.stack([c.clicked for c in ctxs]), np.stack([c.impressed for c in ctxs]))
    own, scores, target = model.rank_many_against(users, ctxs[0].item_keys, ctxs[0].item_feats,
                                                  np.stack([shown for _, shown in part]), rng)
    target = np.clip(target, 0.0, 1.0)
    scores = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0, posinf=1e300, neginf=-1e300)
    own_items = catalogue.pks[own]
    for r, ((job, _), session) in enumerate(zip(part, sessions_of, strict=True)):
        cols["arms"].append(arm_id)
        cols["experiments"].append(job.experiment_id)
        cols["served"].append(job.served_arm_id)
        cols["requests"].append(job.request_id)
        cols["users"].append(job.user_pk)
        cols["impressions"].append(_joined(job.impression_ids))
        cols["items"].append(_joined(job.items))
        cols["logged"].append(_joined(np.clip(job.logged, 1e-300, 1.0).tolist()))
        cols["target"].append(_joined(target[r].tolist()))
        cols["shadow_items"].append(_joined(own_items[r].tolist()))
        cols["shadow_scores"].append(_joined(scores[r].tolist()))
        cols["versions"].append(loaded.version)
        cols["hist_clicked"].append(_joined(session.clicked))
        cols["hist_impressed"].append(_joined(session.impressed))


def shadow_write(cols: dict[str, list]) -> int:
    """One statement for the batch, committed without waiting for the WAL flush (as impressions are): a crash
    loses at most the last moment's shadow rows, and the drain's commits never queue behind serving's."""
    if not cols["arms"]:
        return 0
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit = off;\n" + _INSERT_SQL, cols)
        return cursor.rowcount


def _state_with(arm_ids: set[int]) -> Any:
    """The worker's serving snapshot, once it holds these arms' models: waits while one is still loading, and
    refreshes once when one is unknown (an arm put in the shadow since the last refresh)."""
    from experiments.serving.cache import serving_cache

    state = serving_cache.shadow_models_on()
    for arm_id in sorted(arm_ids):
        if arm_id not in state.models:
            state = serving_cache.model_wait(arm_id, timeout=60)
    if not arm_ids <= set(state.models):
        state = serving_cache.refresh()
    return state


def shadow_rank(raw: list[bytes], rng: np.random.Generator) -> int:
    """Ranks one batch popped from the queue with every shadow arm it names and writes it; the rows written."""
    jobs = [ShadowJob.decode(text) for text in raw]
    state = _state_with({arm_id for job in jobs for arm_id in job.shadow_arm_ids})
    return shadow_write(shadow_rows(jobs, state, rng))


def lowest_priority() -> None:
    """This process at nice 19, and its autogroup too (where the kernel has autogroups)."""
    try:
        os.nice(19 - os.nice(0))
    except OSError as exc:
        log.warning("shadow_nice_failed error=%s", exc)
    try:
        with open("/proc/self/autogroup", "w") as f:
            f.write("19")
    except OSError:
        pass  # no autogroups (or not allowed): the process nice is what there is


class CpuGauge:
    """CPU cores the rest of the machine used over a short window: ``/proc/stat``'s busy time less this process's
    own (Linux; None elsewhere, or where ``/proc/stat`` cannot be read)."""

    def __init__(self) -> None:
        self.cores = os.cpu_count() or 1
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def _read(self) -> tuple[int, int, float] | None:
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:9]]  # user … steal (guest time is inside user)
        except (OSError, ValueError):
            return None
        own = os.times()
        return sum(fields), fields[3] + fields[4], (own.user + own.system) * self.tick

    def others(self, window_s: float = 0.1) -> float | None:
        first = self._read()
        time.sleep(window_s)
        last = self._read()
        if first is None or last is None or last[0] <= first[0]:
            return None
        total = last[0] - first[0]
        busy = total - (last[1] - first[1]) - (last[2] - first[2])
        return max(0.0, busy / total * self.cores)


def yield_to_serving(gauge: CpuGauge, stop: threading.Event) -> float:
    """Waits while the rest of the machine keeps more than ``RECSITE["SHADOW_YIELD_BUSY"]`` of its cores busy
    (0.75), for at most ``SHADOW_MAX_DEFER_S`` (30 s); the seconds waited. Nice 19 alone does not keep the
    shadow out of serving's way on a saturated machine: its time slices still land inside requests, and its
    Postgres backend runs at normal priority. So the drain ranks in the idle time only, falling behind under
    saturation (the queue keeps the newest requests) and catching up once it eases, and at least one batch
    per ``SHADOW_MAX_DEFER_S`` keeps its estimates moving on a machine that is never idle."""
    options = settings.RECSITE
    limit = float(options.get("SHADOW_YIELD_BUSY", 0.75)) * gauge.cores
    deadline = time.monotonic() + float(options.get("SHADOW_MAX_DEFER_S", 30.0))
    started = time.monotonic()
    while not stop.is_set() and time.monotonic() < deadline:
        busy = gauge.others()
        if busy is None or busy <= limit:
            break
    return time.monotonic() - started


def drain_loop(stop: threading.Event, *, alive: Any = None) -> None:
    """Drains the queue until ``stop`` is set (or ``alive()`` turns false): the shadow process's whole work."""
    from experiments.observability import SHADOW_DEFERRED

    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=10, socket_connect_timeout=2)
    rng = np.random.default_rng()
    gauge = CpuGauge()
    while not stop.is_set() and (alive is None or alive()):
        try:
            first = client.blpop([queue_key()], timeout=1)
            if first is None:
                connection.close()  # idle: hold no connection
                continue
            SHADOW_DEFERRED.inc(yield_to_serving(gauge, stop))
            close_old_connections()
            shadow_rank([first[1], *(client.lpop(queue_key(), BATCH - 1) or [])], rng)
        except Exception:
            log.exception("shadow_drain_failed")
            connection.close()
            stop.wait(1.0)


_process: subprocess.Popen | None = None


def shadow_process_start() -> subprocess.Popen:
    """Starts the shadow drain process as a child of this one (once); it exits when this process does."""
    global _process
    with _lock:
        if _process is None or _process.poll() is not None:
            _process = subprocess.Popen(
                [sys.executable, str(settings.BASE_DIR / "manage.py"), "shadow_drain", "--parent", str(os.getpid())],
                # one BLAS thread: a background process must not spread a scoring pass over the serving cores
                env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
                start_new_session=True,  # a scheduling group of its own: its nice then yields to everything else
            )
            log.info("shadow_process_started pid=%s", _process.pid)
        return _process


def shadow_process_stop(timeout: float = 15.0) -> None:
    global _process
    with _lock:
        running, _process = _process, None
    if running is not None and running.poll() is None:
        running.terminate()
        try:
            running.wait(timeout)
        except subprocess.TimeoutExpired:
            running.kill()


def shadow_drain(*, budget_s: float = 0.8, batch: int = BATCH, seed: int | None = None) -> dict[str, int]:
    """Ranks and writes what the queue holds now, a batch at a time, for at most ``budget_s`` (tests and a manual
    catch-up; the light worker's ``shadow_drain`` process does the same continuously). Returns the requests ranked and rows written."""
    started = time.monotonic()
    rng = np.random.default_rng(seed)
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    done = {"requests": 0, "rows": 0}
    while time.monotonic() - started < budget_s:
        raw = client.lpop(queue_key(), batch)
        if not raw:
            break
        done["rows"] += shadow_rank(raw, rng)
        done["requests"] += len(raw)
    if done["requests"]:
        log.info("shadow_drained requests=%d rows=%d seconds=%.3f", done["requests"], done["rows"],
                 time.monotonic() - started)
    return done
