"""Featurisation: database rows → the NumPy arrays the arms take. Serving AND training use it.

Keeping one module for both is what guarantees that a model is scored online
with exactly the features it was trained on. It is pure (no ORM, no settings):
callers pass plain values read from the database.

Conventions (the arms' side is ``models/types.py``):

* **keys** — users and items are identified for the arms by a stable ``int64``
  key of their *external id* (:func:`external_key`, blake2b; unlike ``hash()``
  it is identical in every process and Python run). Arms hash keys into their
  own tables, so a new user or item needs no registration.
* **user features** — ``float32[user_dim]`` from ``ShopUser.attributes``
  (:func:`user_features`); **item features** — ``float32[n, item_dim]`` from
  ``Item.category``, ``Item.price`` and ``Item.features`` (:func:`item_matrix`).
  Both use the hashing trick, so any ``user_dim``/``item_dim`` an arm is built
  with works (the arm's ``params["user_dim"]``/``["item_dim"]``).
* slot 0 of every vector is a constant 1.0 (a bias the arm may use).
* an attribute ``name: "text"`` (or ``True``) sets the hashed slot of
  ``name=text`` to ±1; a number sets the slot of ``name`` to ±``signed_log1p(value)``;
  a list of numbers is a vector (element j is the number ``name[j]``), a list of
  strings a bag of tokens; a nested object is flattened one level (``name.sub``).
  Other values are ignored.
* items: ``category`` is a ``category=<value>`` token, ``price`` a numeric
  ``price`` feature, then the ``features`` object as for user attributes.

Typical training use::

    keys = external_keys([row.user_external_id for row in rows])
    feats = user_matrix([row.user_attributes for row in rows], dim=arm.params["user_dim"])
    item_feats = item_matrix([(r.category, r.price, r.features) for r in rows], dim=arm.params["item_dim"])
"""

from __future__ import annotations

import hashlib
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import numpy as np

from experiments.bounded_cache import BoundedCache

_INT64_BIAS = 1 << 63


def external_key(external_id: str) -> int:
    """Stable signed int64 key of an external id."""
    digest = hashlib.blake2b(external_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") - _INT64_BIAS


def external_keys(external_ids: Sequence[str]) -> np.ndarray:
    return np.fromiter((external_key(x) for x in external_ids), dtype=np.int64, count=len(external_ids))


# Memo of token → slot. Tokens are attacker-controlled (attribute names and values of any shopper), so the memo is
# bounded by bytes and age, and long tokens (free text, ids) are hashed every time instead of being kept.
SLOT_CACHE_MAX_BYTES = 16 * 1024 * 1024
SLOT_CACHE_TTL_S = 600.0
SLOT_CACHE_MAX_TOKEN = 128
_slots = BoundedCache(max_bytes=SLOT_CACHE_MAX_BYTES, ttl_s=SLOT_CACHE_TTL_S)
_slot_peek = _slots.peek  # a pure function's memo: an old entry is still right, it only ages out at a later put
_SLOT_VALUE_BYTES = 64 + 56 + 28 + 24  # the (token, dim) key tuple and the (index, sign) value tuple with its numbers


def _slot_hash(token: str, dim: int) -> tuple[int, float]:
    h = int.from_bytes(hashlib.blake2b(token.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")
    if dim <= 1:
        return 0, 1.0
    return 1 + (h >> 1) % (dim - 1), (1.0 if h & 1 else -1.0)


def _slot(token: str, dim: int) -> tuple[int, float]:
    """Hashed (index, sign) of a token in 1..dim-1; slot 0 is the bias."""
    key = (token, dim)
    hit = _slot_peek(key)
    if hit is not None:
        return hit
    value = _slot_hash(token, dim)
    if len(token) <= SLOT_CACHE_MAX_TOKEN:
        _slots.put(key, value, size=_SLOT_VALUE_BYTES + sys.getsizeof(token))
    return value


def _signed_log1p(x: float) -> float:
    return math.copysign(math.log1p(abs(x)), x)


def _add(vec: np.ndarray, name: str, value: Any, depth: int = 0) -> None:
    dim = vec.shape[0]
    if isinstance(value, bool):
        if value:
            i, s = _slot(f"{name}=true", dim)
            vec[i] += s
    elif isinstance(value, (int, float, Decimal)):
        x = float(value)
        if math.isfinite(x):
            i, s = _slot(name, dim)
            vec[i] += s * _signed_log1p(x)
    elif isinstance(value, str):
        i, s = _slot(f"{name}={value}", dim)
        vec[i] += s
    elif isinstance(value, list):
        # Numbers are positional (a vector: ``name[j]``); strings are a bag of ``name=text`` tokens.
        for j, element in enumerate(value[:64]):
            if isinstance(element, str):
                _add(vec, name, element, depth)
            elif not isinstance(element, (list, dict)):
                _add(vec, f"{name}[{j}]", element, depth)
    elif isinstance(value, Mapping) and depth == 0:
        for sub, v in list(value.items())[:64]:
            _add(vec, f"{name}.{sub}", v, depth + 1)


def _vector(pairs: Iterable[tuple[str, Any]], dim: int) -> np.ndarray:
    vec = np.zeros(dim, dtype=np.float32)
    vec[0] = 1.0
    for name, value in pairs:
        _add(vec, str(name), value)
    return vec


def user_features(attributes: Mapping[str, Any] | None, *, dim: int) -> np.ndarray:
    """``float32[dim]`` of one user's attributes."""
    return _vector((attributes or {}).items(), dim)


def user_matrix(attributes: Sequence[Mapping[str, Any] | None], *, dim: int) -> np.ndarray:
    """``float32[m, dim]``, one row per user."""
    out = np.zeros((len(attributes), dim), dtype=np.float32)
    for row, attrs in enumerate(attributes):
        out[row] = user_features(attrs, dim=dim)
    return out


def item_features(*, category: str, price: Any, features: Mapping[str, Any] | None, dim: int) -> np.ndarray:
    """``float32[dim]`` of one item."""
    pairs: list[tuple[str, Any]] = []
    if category:
        pairs.append(("category", category))
    if price is not None:
        pairs.append(("price", price))
    pairs.extend((features or {}).items())
    return _vector(pairs, dim)


def item_matrix(rows: Sequence[tuple[str, Any, Mapping[str, Any] | None]], *, dim: int) -> np.ndarray:
    """``float32[n, dim]`` from ``(category, price, features)`` tuples."""
    out = np.zeros((len(rows), dim), dtype=np.float32)
    for row, (category, price, features) in enumerate(rows):
        out[row] = item_features(category=category, price=price, features=features, dim=dim)
    return out
