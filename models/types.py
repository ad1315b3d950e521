"""The data the Django side hands to arms: plain NumPy, validated once here.

Conventions (see models/README.md):

* users and items are identified by stable ``int64`` keys (the Django side
  hashes external ids); arms hash keys into fixed tables, so unseen keys work;
* ``user_feats`` is float32 ``[user_dim]`` (or ``[m, user_dim]``), item feats are
  float32 ``[n, item_dim]``;
* session history arrays are int64 ``[history_len]`` (or ``[m, history_len]``),
  most recent first, padded with ``-1`` at the end;
* ``position`` is the 1-based slot an item was shown in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.errors import BadBatchError

PAD = -1


def _as(name: str, x: object, dtype: type, ndim: int) -> np.ndarray:
    try:
        arr = np.asarray(x)
        if dtype is np.int64 and arr.dtype.kind == "f":
            raise BadBatchError(f"{name} must be integer keys, got {arr.dtype}")
        arr = arr.astype(dtype, copy=False)
    except (TypeError, ValueError) as exc:
        raise BadBatchError(f"{name}: {exc}") from exc
    if arr.ndim != ndim:
        raise BadBatchError(f"{name} must have {ndim} dims, got shape {arr.shape}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise BadBatchError(f"{name} contains NaN or inf")
    return arr


def _history(name: str, h: object | None, rows: int | None, length: int) -> np.ndarray:
    shape = (length,) if rows is None else (rows, length)
    if h is None:
        return np.full(shape, PAD, dtype=np.int64)
    arr = _as(name, h, np.int64, len(shape))
    if arr.shape != shape:
        raise BadBatchError(f"{name} must have shape {shape}, got {arr.shape}")
    return arr


@dataclass(frozen=True)
class Context:
    """One ranking request: a user and their candidate items.

    Build with :meth:`make`, which validates and converts dtypes.
    """

    user_key: int
    user_feats: np.ndarray  # float32 [user_dim]
    item_keys: np.ndarray  # int64 [n]
    item_feats: np.ndarray  # float32 [n, item_dim]
    clicked: np.ndarray  # int64 [history_len], most recent first, -1 padded
    impressed: np.ndarray  # int64 [history_len], most recent first, -1 padded

    @classmethod
    def make(
        cls,
        user_key: int,
        user_feats: np.ndarray,
        item_keys: np.ndarray,
        item_feats: np.ndarray,
        clicked: np.ndarray | None = None,
        impressed: np.ndarray | None = None,
        history_len: int = 10,
    ) -> Context:
        uf = _as("user_feats", user_feats, np.float32, 1)
        keys = _as("item_keys", item_keys, np.int64, 1)
        feats = _as("item_feats", item_feats, np.float32, 2)
        if feats.shape[0] != keys.shape[0]:
            raise BadBatchError("item_feats and item_keys disagree on the number of items")
        if keys.shape[0] == 0:
            raise BadBatchError("no candidate items")
        return cls(
            int(user_key),
            uf,
            keys,
            feats,
            _history("clicked", clicked, None, history_len),
            _history("impressed", impressed, None, history_len),
        )

    @property
    def n(self) -> int:
        return int(self.item_keys.shape[0])


@dataclass(frozen=True)
class Batch:
    """Rows of (user, item) pairs: a labelled mini-batch or rows to score.

    ``labels`` is None when the batch is only scored. ``position`` (1-based slot
    shown) lets arms model position bias; rows to score without a position use
    the serving position 1.
    """

    user_keys: np.ndarray  # int64 [m]
    user_feats: np.ndarray  # float32 [m, user_dim]
    item_keys: np.ndarray  # int64 [m]
    item_feats: np.ndarray  # float32 [m, item_dim]
    labels: np.ndarray | None  # float32 [m] in {0, 1}
    position: np.ndarray  # int64 [m], >= 1
    sample_weight: np.ndarray | None  # float32 [m], >= 0
    clicked: np.ndarray  # int64 [m, history_len]
    impressed: np.ndarray  # int64 [m, history_len]

    @classmethod
    def make(
        cls,
        user_keys: np.ndarray,
        user_feats: np.ndarray,
        item_keys: np.ndarray,
        item_feats: np.ndarray,
        labels: np.ndarray | None = None,
        position: np.ndarray | None = None,
        sample_weight: np.ndarray | None = None,
        clicked: np.ndarray | None = None,
        impressed: np.ndarray | None = None,
        history_len: int = 10,
    ) -> Batch:
        uk = _as("user_keys", user_keys, np.int64, 1)
        m = uk.shape[0]
        if m == 0:
            raise BadBatchError("empty batch")
        uf = _as("user_feats", user_feats, np.float32, 2)
        ik = _as("item_keys", item_keys, np.int64, 1)
        itf = _as("item_feats", item_feats, np.float32, 2)
        for name, arr in (("user_feats", uf), ("item_keys", ik), ("item_feats", itf)):
            if arr.shape[0] != m:
                raise BadBatchError(f"{name} has {arr.shape[0]} rows, expected {m}")
        y = None
        if labels is not None:
            y = _as("labels", labels, np.float32, 1)
            if y.shape[0] != m or not np.isin(y, (0.0, 1.0)).all():
                raise BadBatchError("labels must be m values in {0, 1}")
        pos = np.ones(m, np.int64) if position is None else _as("position", position, np.int64, 1)
        if pos.shape[0] != m or (pos < 1).any():
            raise BadBatchError("position must be m 1-based slots")
        w = None
        if sample_weight is not None:
            w = _as("sample_weight", sample_weight, np.float32, 1)
            if w.shape[0] != m or (w < 0).any():
                raise BadBatchError("sample_weight must be m non-negative values")
        return cls(
            uk,
            uf,
            ik,
            itf,
            y,
            pos,
            w,
            _history("clicked", clicked, m, history_len),
            _history("impressed", impressed, m, history_len),
        )

    def __len__(self) -> int:
        return int(self.user_keys.shape[0])

    def take(self, idx: np.ndarray | slice) -> Batch:
        """Sub-batch of the given rows (no re-validation needed)."""

        def t(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[idx]

        return Batch(
            self.user_keys[idx],
            self.user_feats[idx],
            self.item_keys[idx],
            self.item_feats[idx],
            t(self.labels),
            self.position[idx],
            t(self.sample_weight),
            self.clicked[idx],
            self.impressed[idx],
        )

    def weights(self) -> np.ndarray:
        """Sample weights as float32 (ones when none were given)."""
        if self.sample_weight is None:
            return np.ones(len(self), np.float32)
        return self.sample_weight


@dataclass(frozen=True)
class Users:
    """Several ranking requests over one shared candidate set (``rank_many``)."""

    keys: np.ndarray  # int64 [m]
    feats: np.ndarray  # float32 [m, user_dim]
    clicked: np.ndarray  # int64 [m, history_len]
    impressed: np.ndarray  # int64 [m, history_len]

    @classmethod
    def make(
        cls,
        keys: np.ndarray,
        feats: np.ndarray,
        clicked: np.ndarray | None = None,
        impressed: np.ndarray | None = None,
        history_len: int = 10,
    ) -> Users:
        k = _as("user keys", keys, np.int64, 1)
        f = _as("user feats", feats, np.float32, 2)
        if f.shape[0] != k.shape[0]:
            raise BadBatchError("user feats and keys disagree on rows")
        m = k.shape[0]
        return cls(
            k,
            f,
            _history("clicked", clicked, m, history_len),
            _history("impressed", impressed, m, history_len),
        )

    @classmethod
    def of(cls, ctx: Context) -> Users:
        return cls(
            np.array([ctx.user_key], np.int64),
            ctx.user_feats[None, :],
            ctx.clicked[None, :],
            ctx.impressed[None, :],
        )


@dataclass(frozen=True)
class Ranking:
    """What ``rank`` returns: shown candidate indices in slot order.

    ``propensities[j]`` is the exact probability, under the arm's own
    randomisation given the context, that ``indices[j]`` lands in slot ``j``.
    """

    indices: np.ndarray  # int64 [k]
    scores: np.ndarray  # float64 [k]
    propensities: np.ndarray  # float64 [k], in (0, 1]
