"""Delta checkpoints, as ByteDance's Monolith writes them: only what changed since the last version.

An arm's state is small JSON metadata plus named arrays (:meth:`models.base.Arm.state`).
A :class:`DeltaTracker` keeps a copy of the arrays as last written and, for the
next version, finds what changed without knowing what the arrays mean:

* an array's **rows** are its first axis (an embedding or hash-table row; one
  element of a 1-D table). Rows that differ bit for bit from the last written
  copy are written as ``idx:<name>`` (row numbers, int32 below 2**31 rows) +
  ``rows:<name>`` (their new values);
* an array that is small, reshaped, or changed in more than half its rows (a
  dense layer, a step counter) is written whole as ``full:<name>``;
* the metadata (counters, params, ``extra``) is always written whole.

Every value in a delta is absolute (new values, never increments), so applying
a delta twice, or copying one as a later version, gives the same state. A
version's state is its chain: the newest full snapshot at or below it plus each
delta after it, in order (:func:`state_restore`). No Django here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models import serialization
from models.base import Arm
from models.errors import StateFormatError

# Arrays with fewer elements than this are compared and written whole.
SMALL_ELEMENTS = 4096
# More changed rows than this fraction of the array: write it whole.
FULL_FRACTION = 0.5

_BITS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def _own(a: np.ndarray) -> np.ndarray:
    return np.array(a, copy=True, order="C")


def _changed_rows(new: np.ndarray, old: np.ndarray) -> np.ndarray:
    """Row numbers (first axis) where ``new`` differs bit for bit from ``old``."""
    n = new.reshape(new.shape[0], -1)
    o = old.reshape(old.shape[0], -1)
    bits = _BITS.get(new.dtype.itemsize)
    if bits is not None and n.flags.c_contiguous and o.flags.c_contiguous:
        ne = n.view(bits) != o.view(bits)
    else:
        ne = n != o
    return np.flatnonzero(ne.any(axis=1))


class DeltaTracker:
    """The arrays as last written, and the diff of an arm's current state against them."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self._last = {name: _own(a) for name, a in arrays.items()}

    @classmethod
    def of(cls, arm: Arm) -> DeltaTracker:
        return cls(arm.state()[1])

    def diff(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The delta arrays taking the last written state to ``arrays``; the tracker then holds ``arrays``.

        Call it once per version actually written (a dropped write must drop the tracker too).
        """
        out: dict[str, np.ndarray] = {}
        for name, new in arrays.items():
            new = np.asarray(new)
            old = self._last.get(name)
            whole = (
                old is None or old.shape != new.shape or old.dtype != new.dtype or new.ndim == 0
                or new.size < SMALL_ELEMENTS
            )
            if whole:
                if old is None or old.shape != new.shape or old.dtype != new.dtype or old.tobytes() != new.tobytes():
                    out[f"full:{name}"] = self._last[name] = _own(new)
                continue
            assert old is not None
            rows = _changed_rows(new, old)
            if rows.size == 0:
                continue
            if rows.size > FULL_FRACTION * new.shape[0]:
                old[...] = new
                out[f"full:{name}"] = old.copy()
                continue
            values = new[rows]
            old[rows] = values
            out[f"idx:{name}"] = rows.astype(np.int32 if new.shape[0] < 2**31 else np.int64)
            out[f"rows:{name}"] = values
        for gone in set(self._last) - set(arrays):
            raise StateFormatError(f"array {gone!r} disappeared from the arm's state")
        return out


def delta_pack(arm_meta: dict[str, Any], delta: dict[str, np.ndarray]) -> bytes:
    """A delta checkpoint: the arm's whole metadata plus the delta arrays (uncompressed ``.npz``)."""
    return serialization.pack({"arm": arm_meta}, delta, fmt=serialization.DELTA_FORMAT)


def delta_of(arm: Arm, tracker: DeltaTracker) -> bytes:
    """The delta checkpoint taking the tracker's state to ``arm``'s; the tracker then holds ``arm``'s."""
    meta, arrays = arm.state()
    return delta_pack(meta, tracker.diff(arrays))


def is_delta(data: bytes) -> bool:
    """True for a delta checkpoint, False for a full one; StateFormatError for anything else."""
    meta, _ = serialization.unpack(bytes(data), formats=(serialization.FORMAT, serialization.DELTA_FORMAT))
    return meta["format"] == serialization.DELTA_FORMAT


def delta_apply(meta: dict[str, Any], arrays: dict[str, np.ndarray], data: bytes) -> dict[str, Any]:
    """Apply one delta checkpoint to ``arrays`` in place; returns the new metadata."""
    dmeta, delta = serialization.unpack(bytes(data), formats=(serialization.DELTA_FORMAT,))
    for key, value in delta.items():
        part, _, name = key.partition(":")
        if part == "full":
            arrays[name] = value
        elif part == "idx":
            if name not in arrays:
                raise StateFormatError(f"delta updates rows of {name!r}, which the base state lacks")
            target = arrays[name]
            if not target.flags.writeable:
                target = arrays[name] = target.copy()
            target[value] = delta[f"rows:{name}"]
        elif part != "rows":
            raise StateFormatError(f"unknown delta entry {key!r}")
    arm_meta = dict(dmeta["arm"])
    if arm_meta.get("kind") != meta.get("kind"):
        raise StateFormatError(f"delta of a {arm_meta.get('kind')!r} arm applied to a {meta.get('kind')!r} state")
    return arm_meta


def state_restore(snapshot: bytes, deltas: list[bytes]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The state of a chain: a full snapshot, then each delta after it in version order."""
    meta, arrays = serialization.unpack(bytes(snapshot))
    meta.pop("format", None)
    for data in deltas:
        meta = delta_apply(meta, arrays, data)
    return meta, arrays


def arm_advance(arm: Arm, deltas: list[bytes]) -> Arm:
    """A new arm: ``arm``'s state with ``deltas`` applied (``arm`` itself is left untouched)."""
    meta, arrays = arm.state()
    meta = dict(meta)
    own = {name: _own(a) for name, a in arrays.items()}
    for data in deltas:
        meta = delta_apply(meta, own, data)
    return type(arm).from_state(meta, own)
