"""Stable, vectorised hashing of int64 keys into table buckets.

The Django side hashes external ids to int64 keys; here we hash those keys again
into fixed-size tables so unseen users/items need no vocabulary registration.
splitmix64 is used because it is cheap in NumPy, well mixed, and identical on
every platform (unlike Python's ``hash``).
"""

from __future__ import annotations

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def mix64(x: np.ndarray, salt: int = 0) -> np.ndarray:
    """splitmix64 finaliser of ``x + salt`` as uint64 (wrapping arithmetic)."""
    z = np.asarray(x).astype(np.int64, copy=False).view(np.uint64)
    with np.errstate(over="ignore"):
        z = z + np.uint64(salt & 0xFFFFFFFFFFFFFFFF) * _GOLDEN + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        z = z ^ (z >> np.uint64(31))
    return z


def bucket(keys: np.ndarray, n_buckets: int, salt: int = 0) -> np.ndarray:
    """Map int64 keys to ``[0, n_buckets)`` as int64."""
    return (mix64(keys, salt) % np.uint64(n_buckets)).astype(np.int64)


def combine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hash of an ordered pair of int64 keys, as int64 (for key crosses)."""
    with np.errstate(over="ignore"):
        h = mix64(a, 1) ^ (mix64(b, 2) * _M1)
    return h.view(np.int64)


def uniform01(keys: np.ndarray, salt: int) -> np.ndarray:
    """Deterministic pseudo-uniform numbers in [0, 1) derived from keys."""
    return (mix64(keys, salt) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def double_or_nothing(user_keys: np.ndarray, item_keys: np.ndarray, n_heads: int, salt: int) -> np.ndarray:
    """Bootstrap weights ``[m, n_heads]`` in {0, 2} from a hash of each row.

    Deterministic in (row, head, salt), so an update can be replayed exactly
    from a checkpoint without storing RNG state.
    """
    m = user_keys.shape[0]
    row = combine(user_keys, item_keys) ^ (np.arange(m, dtype=np.int64) << 20)
    heads = np.arange(n_heads, dtype=np.int64) << 44
    return 2.0 * (uniform01(row[:, None] + heads[None, :], salt) < 0.5)
