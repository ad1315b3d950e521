"""Checkpoint storage: snapshots and deltas, chains, the newest version, copies, retention, the announcement.

A checkpoint (``ModelCheckpoint``) is one version of an arm's state with the
cursors of the data it has seen. Its ``state`` is either a **full snapshot**
(``snapshot_version`` null: the arm's ``.npz``) or a **delta** (:mod:`models.deltas`:
the rows of each state array that changed since version - 1, plus the dense
part and the metadata), and ``snapshot_version`` names the snapshot its chain
starts from. A version's model is its chain — that snapshot, then every delta
after it up to the version (:func:`checkpoint_chain`, :func:`checkpoint_model`).
Training (:mod:`experiments.services.training`) writes a snapshot every
``snapshot_every`` versions and deltas in between; a model rollback
(:mod:`experiments.services.decisions`) writes a snapshot of an older version's
chain. Retention keeps the chains of the versions it keeps.
"""

from __future__ import annotations

import io
import json
import logging
import zipfile
import zlib
from typing import Any

from django.db import connection

from experiments import realtime
from experiments.models import ModelCheckpoint
from experiments.services.training_config import TrainingConfig
from experiments.serving.versions import model_version_notify
from models import deltas
from models.base import Arm as Model
from models.errors import StateFormatError
from models.registry import arm_from_state

log = logging.getLogger(__name__)


class StaleBase(Exception):
    """Another writer produced a version after this step read its base: the step is dropped."""


def checkpoint_head(*, arm_id: int) -> dict[str, Any] | None:
    """The newest version's version, cursors, examples seen and metrics (never its state)."""
    return (
        ModelCheckpoint.objects.filter(arm_id=arm_id)
        .order_by("-version")
        .values("version", "cursor", "click_cursor", "examples_seen", "metrics", "snapshot_version")
        .first()
    )


# The rows that make version %(v)s: from its chain's snapshot, or only those after %(have)s when %(have)s is
# inside the chain (a serving process already holding it).
_CHAIN_SQL = """
WITH t AS (SELECT COALESCE(snapshot_version, version) AS s FROM experiments_modelcheckpoint
           WHERE arm_id = %(arm)s AND version = %(v)s)
SELECT c.version, c.snapshot_version, c.state, t.s FROM experiments_modelcheckpoint c, t
WHERE c.arm_id = %(arm)s AND c.version <= %(v)s
  AND c.version > (CASE WHEN t.s <= %(have)s AND %(have)s < %(v)s THEN %(have)s ELSE t.s - 1 END)
ORDER BY c.version
"""


class ChainBroken(LookupError):
    """A version's chain is not complete in the database (a row is missing or out of place)."""


def checkpoint_chain(*, arm_id: int, version: int, have: int = 0) -> tuple[bool, list[bytes]]:
    """The states that make ``version``, in one query: ``(from_snapshot, states)``.

    ``have`` is a version the caller already holds in memory (0: none). When
    ``version``'s chain runs through it, only the deltas after ``have`` come back
    (``from_snapshot`` False); otherwise the chain's snapshot and every delta after it.
    """
    with connection.cursor() as cur:
        cur.execute(_CHAIN_SQL, {"arm": arm_id, "v": version, "have": int(have)})
        rows = cur.fetchall()
    if not rows or rows[-1][0] != version:
        raise ChainBroken(f"arm {arm_id} has no version {version}")
    start = rows[0][3]
    from_snapshot = not (0 < have < version and start <= have)
    first = start if from_snapshot else have + 1
    if [r[0] for r in rows] != list(range(first, version + 1)):
        raise ChainBroken(f"the chain of version {version} of arm {arm_id} has gaps")
    if from_snapshot and rows[0][1] is not None:
        raise ChainBroken(f"the chain of version {version} of arm {arm_id} does not start at a snapshot")
    return from_snapshot, [bytes(r[2]) for r in rows]


def checkpoint_model(*, arm_id: int, kind: str, version: int, have: Model | None = None,
                     have_version: int = 0) -> Model:
    """The model of a stored version: its chain restored, or ``have`` (at ``have_version``) advanced by deltas."""
    from experiments.serving.arms import arm_restore

    full, states = checkpoint_chain(arm_id=arm_id, version=version, have=have_version if have is not None else 0)
    if not full:
        assert have is not None
        return deltas.arm_advance(have, states)
    if len(states) == 1:
        return arm_restore(kind=kind, state=states[0])
    model = arm_from_state(*deltas.state_restore(states[0], states[1:]))
    if model.kind != kind:
        raise StateFormatError(f"checkpoint holds a {model.kind!r} arm, expected {kind!r}")
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


def checkpoint_copy_insert(*, base_version: int, metrics: dict[str, Any], **common: Any) -> None:
    """A new version holding the base version's state, copied inside Postgres (no round trip of the bytes).

    A copied delta stays a delta of the same chain: its values are absolute, so applying it on
    top of the version it came from changes nothing.
    """
    table = ModelCheckpoint._meta.db_table
    with connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO {table} (arm_id, version, state, snapshot_version, metrics, cursor, click_cursor, "
            "examples_seen, created_at) "
            f"SELECT arm_id, %s, state, snapshot_version, %s, %s, %s, %s, clock_timestamp() FROM {table} "
            "WHERE arm_id = %s AND version = %s",
            [
                common["version"], json.dumps(metrics), common["cursor"], common["click_cursor"],
                common["examples_seen"], common["arm_id"], base_version,
            ],
        )
        if cur.rowcount != 1:
            raise StaleBase(f"base version {base_version} of arm {common['arm_id']} is gone")


def checkpoint_announce(*, arm_id: int, slug: str, arm_name: str, version: int, metrics: dict[str, Any]) -> None:
    """After commit: serving processes and the dashboards hear of the new version. Never raises."""
    model_version_notify(arm_id=arm_id, version=version)
    realtime.publish(slug, realtime.model_version_event(arm_id=arm_id, arm=arm_name, version=version, metrics=metrics))


def checkpoint_retention_apply(*, config: TrainingConfig | None = None, arm_id: int | None = None) -> int:
    """Delete checkpoints outside "the last N and every Kth version, with their chains"; returns how many went.

    A kept delta keeps every version from its chain's snapshot up to it, so each kept
    version can still be restored (and rolled back to). The latest version is always
    among the last N, so serving and training never lose theirs; old deltas outside
    every kept chain go.
    """
    config = config or TrainingConfig.from_env()
    table = ModelCheckpoint._meta.db_table
    where = "WHERE arm_id = %s" if arm_id is not None else ""
    sql = (
        f"WITH h AS (SELECT arm_id, max(version) AS top FROM {table} {where} GROUP BY arm_id), "
        f"kept AS (SELECT c.arm_id, c.version, COALESCE(c.snapshot_version, c.version) AS lo FROM {table} c "
        "JOIN h ON h.arm_id = c.arm_id WHERE c.version > h.top - %s OR c.version %% %s = 0) "
        f"DELETE FROM {table} c USING h WHERE c.arm_id = h.arm_id AND NOT EXISTS "
        "(SELECT 1 FROM kept k WHERE k.arm_id = c.arm_id AND c.version BETWEEN k.lo AND k.version)"
    )
    params = ([arm_id] if arm_id is not None else []) + [config.keep_last, config.keep_every]
    with connection.cursor() as cur:
        cur.execute(sql, params)
        deleted = cur.rowcount
    log.info("checkpoint_retention deleted=%d keep_last=%d keep_every=%d", deleted, config.keep_last, config.keep_every)
    return deleted
