"""Per-process cache of sticky assignments: (experiment, user) → the arm of their ``Assignment`` row.

Filled by the user lookup of the serve path (one query reads the user and their
assignment) and after each write of the row, so a user this process served
recently costs no extra round trip. An entry is valid only for the allocation
epoch it was read in: every change of configuration (re-weight, pause, resume,
promotion, start, stop, a policy's re-allocation) bumps the epoch, and that is
the only moment another process may move a user, so the first request of each
user after a change re-reads their row. Within an epoch the row moves only
when this process moves it itself, or in a first-sight race that the write
detects. Bounded: least recently used entries go first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

# A hit needs the user row cached too (5 s TTL), so entries past the users of the last few seconds are never read:
# 50,000 covers 10,000 requests/s. ~300 bytes an entry (measured, with its user id string): ~15 MB at most.
DEFAULT_MAX_ENTRIES = 50_000

# ``get`` answer for "not cached" (None is a cached answer: the user has no row in this experiment).
NOT_CACHED = object()


class AssignmentCache:
    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[int, str], tuple[int | None, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, *, experiment_id: int, user_id: str, epoch: int) -> int | None | object:
        """The cached arm id (or None: no row), or :data:`NOT_CACHED` when unknown or read in another epoch."""
        key = (experiment_id, user_id)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[1] != epoch:
                return NOT_CACHED
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, *, experiment_id: int, user_id: str, epoch: int, arm_id: int | None) -> None:
        key = (experiment_id, user_id)
        with self._lock:
            self._entries[key] = (arm_id, epoch)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def forget(self, *, experiment_id: int, user_id: str) -> None:
        with self._lock:
            self._entries.pop((experiment_id, user_id), None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


assignment_cache = AssignmentCache()
