"""Opaque impression ids: what the API hands out for an impression and accepts back on a click.

An impression row keeps its bigint primary key; clients see ``base64url(row id ‖ tag)``, where
``tag`` is HMAC-SHA256 of the row id's bytes under a key derived from ``SECRET_KEY`` (purpose
``recsite.impression_id.v1``), truncated to 96 bits. About 23 characters for a row id below 2^40.

* Unguessable: forging an id for an impression one was not shown means guessing a 96-bit tag, so
  nobody can click other shoppers' impressions (inflating an arm's CTR, its promotion evidence and
  its training data) by counting 1, 2, 3, …
* Not secret: the row id is readable inside the id (it only says how many impressions were served
  before this one). Only the tag is what makes the id valid.
* Verified in constant time; a malformed, altered, forged, or unknown id is the same "not found".
* ``SECRET_KEY_FALLBACKS`` are accepted too, so rotating the key does not void the impressions
  served just before (their clicks arrive within the attribution window).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac

from django.conf import settings

_PURPOSE = b"recsite.impression_id.v1"
TAG_BYTES = 12
MAX_ROW_BYTES = 8  # a bigint
MAX_LENGTH = 64  # comfortably above the longest id (8 + 12 bytes → 27 characters); longer input is refused as such


@functools.lru_cache(maxsize=8)
def _key(secret: str) -> bytes:
    return hmac.new(secret.encode("utf-8", "surrogatepass"), _PURPOSE, hashlib.sha256).digest()


def _tag(key: bytes, row: bytes) -> bytes:
    return hmac.new(key, row, hashlib.sha256).digest()[:TAG_BYTES]


def _row_bytes(pk: int) -> bytes:
    return pk.to_bytes(max(1, (pk.bit_length() + 7) // 8), "big")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def impression_id_encode(pk: int) -> str:
    """The opaque id of impression row ``pk``."""
    row = _row_bytes(pk)
    return _b64(row + _tag(_key(settings.SECRET_KEY), row))


def impression_ids_encode(pks: list[int]) -> list[str]:
    key = _key(settings.SECRET_KEY)
    return [_b64(row + _tag(key, row)) for row in map(_row_bytes, pks)]


def impression_id_decode(token: str) -> int | None:
    """The row id inside a genuine opaque id, else None (whatever was wrong with it)."""
    if not isinstance(token, str) or not token.isascii() or not 0 < len(token) <= MAX_LENGTH:
        return None
    try:
        blob = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        return None
    row, tag = blob[:-TAG_BYTES], blob[-TAG_BYTES:]
    # Canonical form only: one string per impression (no leading zero bytes, no stray trailing bits).
    if not 1 <= len(row) <= MAX_ROW_BYTES or row[0] == 0 or _b64(blob) != token:
        return None
    valid = False
    for secret in (settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS):
        valid |= hmac.compare_digest(tag, _tag(_key(secret), row))
    pk = int.from_bytes(row, "big")
    return pk if valid and pk < 2**63 else None
