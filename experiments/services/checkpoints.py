"""Checkpoint storage: compact state, the newest version of an arm, copies, retention, and the announcement.

A checkpoint (``ModelCheckpoint``) is one version of an arm's whole state with the
cursors of the data it has seen. Training (:mod:`experiments.services.training`)
writes one per mini-batch; a model rollback (:mod:`experiments.services.decisions`)
writes one holding an older version's state.
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

log = logging.getLogger(__name__)


class StaleBase(Exception):
    """Another writer produced a version after this step read its base: the step is dropped."""


def checkpoint_head(*, arm_id: int) -> dict[str, Any] | None:
    """The newest version's version, cursors, examples seen and metrics (never its state)."""
    return (
        ModelCheckpoint.objects.filter(arm_id=arm_id)
        .order_by("-version")
        .values("version", "cursor", "click_cursor", "examples_seen", "metrics")
        .first()
    )


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


def checkpoint_announce(*, arm_id: int, slug: str, arm_name: str, version: int, metrics: dict[str, Any]) -> None:
    """After commit: serving processes and the dashboards hear of the new version. Never raises."""
    model_version_notify(arm_id=arm_id, version=version)
    realtime.publish(slug, realtime.model_version_event(arm_id=arm_id, arm=arm_name, version=version, metrics=metrics))


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
