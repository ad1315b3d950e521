"""A per-process cache bounded by bytes and by age, for the serving path's memo tables. Pure Python, no Django.

Entries expire ``ttl_s`` after they were stored; when the byte budget is full the oldest entries
go first (FIFO: with one TTL per cache, the oldest entry is also the first to expire). Every
``put`` also drops expired entries from the old end, so a cache that stops being read does not keep
its dead entries. Sizes are estimates the caller passes in (see :func:`json_tree_bytes`) plus a fixed
per-entry overhead, so ``bytes`` tracks what the entries really hold.

Thread-safe: reads take no lock (a dict lookup is atomic in CPython), writes take one.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

# Two hash-table slots, the OrderedDict node, the (expires, size) tuple with its float and int.
ENTRY_OVERHEAD_BYTES = 240
# At most this many expired entries are dropped per put: a put stays O(1) however much has expired.
_SWEEP_PER_PUT = 64


def json_tree_bytes(value: Any) -> int:
    """Bytes held by a decoded JSON value (dicts, lists, strings, numbers), counted the way ``sys.getsizeof``
    does, children included. Shared small ints and interned strings are counted each time: an overestimate."""
    size = sys.getsizeof(value)
    if isinstance(value, dict):
        for key, sub in value.items():
            size += json_tree_bytes(key) + json_tree_bytes(sub)
    elif isinstance(value, list):
        for sub in value:
            size += json_tree_bytes(sub)
    return size


class BoundedCache:
    def __init__(self, *, max_bytes: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = int(max_bytes)
        self.ttl_s = float(ttl_s)
        self._clock = clock
        self._values: dict[Hashable, Any] = {}
        # Age order, oldest first: key → (expires, size).
        self._meta: OrderedDict[Hashable, tuple[float, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        #: ``peek(key, default=None)``: the value whatever its age, at the cost of a plain dict lookup — for a pure
        #: function's memo, whose old entries are still right and only leave (after ``ttl_s``) at a later put.
        self.peek = self._values.get

    @property
    def bytes(self) -> int:
        """The estimated bytes of every entry held, overheads included; never above ``max_bytes``."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._values)

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value of ``key`` if it is younger than its TTL, else ``default``."""
        meta = self._meta.get(key)
        if meta is None or meta[0] <= self._clock():
            return default
        return self._values.get(key, default)

    def put(self, key: Hashable, value: Any, *, size: int, ttl_s: float | None = None) -> bool:
        """Stores ``value`` (``size`` bytes, key and overhead excluded); False when it alone exceeds the budget."""
        total = int(size) + sys.getsizeof(key) + ENTRY_OVERHEAD_BYTES
        now = self._clock()
        with self._lock:
            self._drop(key)
            self._sweep(now)
            if total > self.max_bytes:
                return False
            self._meta[key] = (now + (self.ttl_s if ttl_s is None else ttl_s), total)
            self._values[key] = value
            self._bytes += total
            while self._bytes > self.max_bytes:
                oldest, (_, size_) = self._meta.popitem(last=False)
                self._values.pop(oldest, None)
                self._bytes -= size_
        return True

    def pop(self, key: Hashable) -> None:
        with self._lock:
            self._drop(key)

    def clear(self) -> None:
        with self._lock:
            self._meta.clear()
            self._values.clear()
            self._bytes = 0

    def _drop(self, key: Hashable) -> None:
        meta = self._meta.pop(key, None)
        if meta is not None:
            self._values.pop(key, None)
            self._bytes -= meta[1]

    def _sweep(self, now: float) -> None:
        for _ in range(_SWEEP_PER_PUT):
            if not self._meta:
                return
            oldest = next(iter(self._meta))
            if self._meta[oldest][0] > now:
                return
            self._drop(oldest)
