"""What a serving process holds and how it reads it: the snapshot dataclasses and the configuration queries.

:mod:`experiments.serving.cache` owns the refresh loop; this module has the
immutable :class:`ServingState` it publishes and the two queries (plus the
catalogue load) a refresh runs.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from django.db import connection

from experiments import features
from experiments.services.assignment import ArmSlot, Layout, layout_of
from models.base import Arm


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
    mode: str = "ab"  # "interleaved": a running experiment team-drafts its serving arms (services/interleaved.py)
    layer: str | None = None  # the layer whose buckets [layer_start, layer_end) it owns (services/layers.py)
    layer_start: int = 0
    layer_end: int = 0
    layer_salt: str = ""
    # Arms that rank every served request without being shown (services/shadow.py); read by every request.
    shadow_arm_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class ServedLayer:
    """A layer's routing table: the serving experiments' ranges, sorted by start."""

    slug: str
    salt: str
    starts: tuple[int, ...]
    ends: tuple[int, ...]
    experiments: tuple[str, ...]


def layers_from(experiments: dict[str, ServedExperiment]) -> dict[str, ServedLayer]:
    grouped: dict[str, list[ServedExperiment]] = {}
    for e in experiments.values():
        if e.layer is not None:
            grouped.setdefault(e.layer, []).append(e)
    out = {}
    for slug, members in grouped.items():
        members.sort(key=lambda e: e.layer_start)
        out[slug] = ServedLayer(slug, members[0].layer_salt, tuple(e.layer_start for e in members),
                                tuple(e.layer_end for e in members), tuple(e.slug for e in members))
    return out


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
    layers: dict[str, ServedLayer] = field(init=False)  # derived from the experiments

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", layers_from(self.experiments))

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
    """One row of :data:`CONFIG_SQL`: an arm of a running or concluded experiment."""

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
    mode: str = "ab"
    holdout_arm_id: int | None = None
    holdout_share: float = 0.0
    holdout_running: bool = False
    layer: str | None = None
    layer_salt: str | None = None
    layer_start: int | None = None
    layer_end: int | None = None


CONFIG_SQL = """
SELECT e.id, e.slug, e.salt, e.status, e.winner_id, e.allocation_epoch,
       EXTRACT(EPOCH FROM COALESCE(e.started_at, e.created_at))::float8, e.control_arm_id,
       a.id, a.name, a.kind, a.params::text, a.weight, a.status,
       (SELECT max(c.version) FROM experiments_modelcheckpoint c WHERE c.arm_id = a.id), e.mode,
       e.holdout_arm_id, e.holdout_share, e.holdout_ended_at IS NULL, l.slug, l.salt, la.start, la."end"
FROM experiments_experiment e
JOIN experiments_arm a ON a.experiment_id = e.id
LEFT JOIN experiments_layerallocation la ON la.experiment_id = e.id
LEFT JOIN experiments_layer l ON l.id = la.layer_id
WHERE e.status IN ('running', 'concluded', 'stopped')
ORDER BY e.id, a.id
"""

# Cheap enough to run four times a second on a 10k-item catalogue, and it moves on
# every kind of change: insert (max id), update (max updated_at), deactivation (count).
CATALOGUE_STAMP_SQL = """
SELECT count(*) FILTER (WHERE active), max(updated_at), max(id), count(*) FROM experiments_item
"""

CATALOGUE_SQL = """
SELECT id, external_id, category, price, features::text FROM experiments_item WHERE active ORDER BY id
"""


def config_read() -> tuple[list[ConfigRow], tuple]:
    """The two queries of a refresh: the served configuration with each arm's newest version, and the
    catalogue stamp."""
    with connection.cursor() as cursor:
        cursor.execute(CONFIG_SQL)
        config_rows = [ConfigRow(*row) for row in cursor.fetchall()]
    return config_rows, catalogue_stamp()


def catalogue_stamp() -> tuple:
    """The catalogue stamp alone (active count, newest change, newest id, count): what a refresh compares."""
    with connection.cursor() as cursor:
        cursor.execute(CATALOGUE_STAMP_SQL)
        return tuple(cursor.fetchone())


def model_signature(kind: str, params: dict) -> str:
    return kind + ":" + json.dumps(params, sort_keys=True)


def experiments_from_rows(rows: list[ConfigRow]) -> dict[str, ServedExperiment]:
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
        layout = layout_of(arms=[ArmSlot(a.id, a.weight, a.status) for a in arms.values()], override=override,
                           holdout_arm=first.holdout_arm_id, holdout_share=float(first.holdout_share or 0.0),
                           holdout_running=bool(first.holdout_running))
        out[first.slug] = ServedExperiment(
            id=first.experiment_id, slug=first.slug, salt=first.salt, status=first.status, winner_id=first.winner_id,
            allocation_epoch=first.allocation_epoch, started_at=float(first.started_at or 0.0), arms=arms,
            layout=layout, mode=first.mode, layer=first.layer, layer_start=first.layer_start or 0,
            layer_end=first.layer_end or 0, layer_salt=first.layer_salt or "",
            shadow_arm_ids=tuple(a.id for a in arms.values() if a.status == "shadow"),
        )
    return out


def catalogue_load(stamp: tuple) -> Catalogue:
    with connection.cursor() as cursor:
        cursor.execute(CATALOGUE_SQL)
        rows = cursor.fetchall()
    if not rows:
        return Catalogue(stamp, np.zeros(0, np.int64), np.zeros(0, np.int64), [], [], {})
    pks = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    external_ids = [r[1] for r in rows]
    feature_rows = [(r[2], r[3], json.loads(r[4]) if r[4] else {}) for r in rows]
    return Catalogue(stamp, pks, features.external_keys(external_ids), external_ids, feature_rows, {})
