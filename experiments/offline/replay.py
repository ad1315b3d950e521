"""Replay evaluation (Li, Chu, Langford & Wang, WSDM 2011) of online-learning arms on a uniform log.

Walk the uniformly-random log in time order. At each event the arm ranks the whole
catalogue for that context; if the item it puts in the event's slot is the logged
item, the event counts: its click is the arm's reward and the arm learns from it.
Otherwise the event is skipped and the arm learns nothing. Because the logging
policy is uniform and independent of the arm, the counted events are distributed
as if the arm had been serving, so replay CTR is unbiased for the arm's online CTR.

Only ≈ 1 in 80 events matches, so replay CTR rests on few events. We therefore
also report its Rao–Blackwellised twin: with uniform logging, E[1{match} r | past]
= π_t(a_i, k_i | x_i) r_i, so (n_items / n) Σ_i π_t(a_i, k_i | x_i) r_i estimates the
same CTR from every event in the log (weights n_items · π_t, the arm's exact slot
probabilities taken before it learns from that event; self-normalised, with a
Wilson interval at the weights' effective sample size).

Pure NumPy plus the arm interface of ``models`` (no Django).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from experiments.offline.obd import OBDItems, OBDLog
from experiments.stats import wilson_interval
from models.types import Batch, Context, Users


class ReplayableArm(Protocol):
    def rank_many(
        self,
        users: Users,
        item_keys: np.ndarray,
        item_feats: np.ndarray,
        k: int,
        rng: np.random.Generator,
        propensities: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]: ...

    def propensity_matrix(self, ctx: Context, k: int) -> np.ndarray: ...

    def partial_fit(self, batch: Batch) -> dict[str, float]: ...


def stable_key(text: str) -> int:
    """A platform-independent signed int64 key for a string (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little", signed=True)


def one_hot(values: np.ndarray, vocabulary: list[np.ndarray]) -> np.ndarray:
    """Concatenated one-hot columns, one block per column of ``values`` (unknown values → all zeros)."""
    blocks = []
    for column, levels in zip(values.T, vocabulary, strict=True):
        blocks.append((column[:, None] == levels[None, :]).astype(np.float32))
    return np.concatenate(blocks, axis=1)


@dataclass(frozen=True)
class ReplayData:
    """A uniform log as the arms see it: int64 keys and float32 features."""

    user_keys: np.ndarray  # (n,) int64
    user_feats: np.ndarray  # (n, user_dim) float32
    item: np.ndarray  # (n,) int, index into the catalogue
    slot: np.ndarray  # (n,) int, 0-based
    click: np.ndarray  # (n,) int
    item_keys: np.ndarray  # (n_items,) int64
    item_feats: np.ndarray  # (n_items, item_dim) float32
    n_slots: int

    @property
    def n(self) -> int:
        return int(self.item.shape[0])

    @property
    def user_dim(self) -> int:
        return int(self.user_feats.shape[1])

    @property
    def item_dim(self) -> int:
        return int(self.item_feats.shape[1])


def obd_replay_data(log: OBDLog, items: OBDItems, *, vocabulary_logs: tuple[OBDLog, ...] = ()) -> ReplayData:
    """Encode an OBD log: one-hot user features, item_feature_0 plus one-hot item categoricals.

    OBD has no user ids; the four user features together are the closest thing,
    so they form the user key. Vocabularies come from ``log`` and ``vocabulary_logs``.
    """
    every = (log, *vocabulary_logs)
    user_vocabulary = [np.unique(np.concatenate([g.user_features[:, j] for g in every])) for j in range(4)]
    item_vocabulary = [np.unique(items.categorical[:, j]) for j in range(items.categorical.shape[1])]
    item_feats = np.concatenate(
        [items.numeric[:, None].astype(np.float32), one_hot(items.categorical, item_vocabulary)], axis=1
    )
    return ReplayData(
        user_keys=np.array([stable_key(key) for key in log.user_keys()], dtype=np.int64),
        user_feats=one_hot(log.user_features, user_vocabulary),
        item=log.item_id,
        slot=log.slot,
        click=log.click,
        item_keys=items.item_id.astype(np.int64),
        item_feats=item_feats,
        n_slots=log.n_positions,
    )


@dataclass(frozen=True)
class ReplayResult:
    events: int
    matched: int
    matched_clicks: int
    replay_ctr: float
    replay_ci: tuple[float, float]  # Wilson 95 % over matched events
    rb: WeightedCTR  # Rao–Blackwellised: the arm's exact probabilities at every event
    updates: int


@dataclass(frozen=True)
class WeightedCTR:
    """Σ w r / Σ w with weights w_i = n_items · π_t(a_i, k_i | x_i) (the uniform log's importance weights).

    The interval is Wilson's at the weights' effective sample size (Σw)² / Σw². For a
    deterministic arm w ∈ {0, n_items}, so this is exactly Wilson over the events that
    agree with the arm; unlike a normal interval it stays honest when the arm's
    favoured items drew no clicks.
    """

    ctr: float
    effective_sample_size: float
    ci: tuple[float, float]

    @classmethod
    def of(cls, weight: np.ndarray, reward: np.ndarray) -> WeightedCTR:
        total, total_sq = float(weight.sum()), float(np.square(weight).sum())
        if total <= 0:
            return cls(0.0, 0.0, (0.0, 1.0))
        ctr = float(weight @ reward) / total
        ess = total**2 / total_sq
        return cls(ctr, ess, wilson_interval(ctr, ess))


def wilson(clicks: int, n: int) -> tuple[float, float]:
    return wilson_interval(clicks / n if n else 0.0, n)


def _slot_probabilities(arm: ReplayableArm, data: ReplayData, rows: np.ndarray) -> np.ndarray:
    """π(a_i, k_i | x_i) for ``rows`` under the arm's current state (one matrix per distinct user)."""
    matrices: dict[int, np.ndarray] = {}
    out = np.empty(rows.size)
    for j, row in enumerate(rows):
        key = int(data.user_keys[row])
        if key not in matrices:
            ctx = Context.make(data.user_keys[row], data.user_feats[row], data.item_keys, data.item_feats)
            matrices[key] = arm.propensity_matrix(ctx, data.n_slots)
        out[j] = matrices[key][data.item[row], data.slot[row]]
    return out


def replay(arm: ReplayableArm, data: ReplayData, *, seed: int, block: int = 64) -> ReplayResult:
    """Replay ``arm`` over ``data`` in order; the arm learns from each matched event as it happens.

    Events are ranked in blocks with ``rank_many`` while the arm's state is unchanged;
    after the first match in a block the arm updates and ranking resumes after it.
    """
    rng = np.random.default_rng(seed)
    n, n_items = data.n, data.item_keys.shape[0]
    matched = matched_clicks = updates = 0
    weight = np.zeros(n)
    i = 0
    while i < n:
        rows = np.arange(i, min(i + block, n))
        users = Users.make(data.user_keys[rows], data.user_feats[rows])
        slates, _, _ = arm.rank_many(users, data.item_keys, data.item_feats, data.n_slots, rng, False)
        chosen = slates[np.arange(rows.size), data.slot[rows]]
        hits = np.flatnonzero(chosen == data.item[rows])
        last = int(hits[0]) if hits.size else rows.size - 1
        scored = rows[: last + 1]
        weight[scored] = n_items * _slot_probabilities(arm, data, scored)
        if hits.size:
            row = rows[last]
            matched += 1
            matched_clicks += int(data.click[row])
            arm.partial_fit(
                Batch.make(
                    user_keys=data.user_keys[row : row + 1],
                    user_feats=data.user_feats[row : row + 1],
                    item_keys=data.item_keys[data.item[row : row + 1]],
                    item_feats=data.item_feats[data.item[row : row + 1]],
                    labels=data.click[row : row + 1].astype(np.float32),
                    position=data.slot[row : row + 1] + 1,
                )
            )
            updates += 1
        i = int(rows[last]) + 1
    return ReplayResult(
        events=n,
        matched=matched,
        matched_clicks=matched_clicks,
        replay_ctr=matched_clicks / matched if matched else 0.0,
        replay_ci=wilson(matched_clicks, matched),
        rb=WeightedCTR.of(weight, data.click.astype(np.float64)),
        updates=updates,
    )


class UniformRandomArm:
    """Reference arm: a uniformly random slate, learning nothing. Its replay CTR must match the log's CTR."""

    def rank_many(
        self,
        users: Users,
        item_keys: np.ndarray,
        item_feats: np.ndarray,
        k: int,
        rng: np.random.Generator,
        propensities: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        m, n = users.keys.shape[0], item_keys.shape[0]
        slates = np.argsort(rng.random((m, n)), axis=1)[:, :k]
        return slates, np.zeros(slates.shape), (np.full(slates.shape, 1.0 / n) if propensities else None)

    def propensity_matrix(self, ctx: Context, k: int) -> np.ndarray:
        return np.full((ctx.n, k), 1.0 / ctx.n)

    def partial_fit(self, batch: Batch) -> dict[str, float]:
        return {}


def progressive_ips(arm: ReplayableArm, data: ReplayData, *, batch_size: int = 100) -> WeightedCTR:
    """CTR of an arm that learns from *every* uniform event, each scored before the arm has seen it.

    Off-policy learning rather than Li's replay: in each mini-batch the arm's exact
    probability of every event's (item, slot) is taken first, then the arm trains on
    the whole batch.
    """
    n, n_items = data.n, data.item_keys.shape[0]
    weight = np.zeros(n)
    for start in range(0, n, batch_size):
        rows = np.arange(start, min(start + batch_size, n))
        weight[rows] = n_items * _slot_probabilities(arm, data, rows)
        arm.partial_fit(
            Batch.make(
                user_keys=data.user_keys[rows],
                user_feats=data.user_feats[rows],
                item_keys=data.item_keys[data.item[rows]],
                item_feats=data.item_feats[data.item[rows]],
                labels=data.click[rows].astype(np.float32),
                position=data.slot[rows] + 1,
            )
        )
    return WeightedCTR.of(weight, data.click.astype(np.float64))
