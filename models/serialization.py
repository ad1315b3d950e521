"""Checkpoint format: an ``.npz`` archive in bytes, JSON metadata, no pickle.

``np.load(..., allow_pickle=False)`` refuses object arrays, so loading a
checkpoint can never execute code.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import numpy as np

from models.errors import StateFormatError

FORMAT = "recsite.models/1"
# A delta checkpoint (models.deltas): changed rows of the arrays on top of an earlier version.
DELTA_FORMAT = "recsite.models.delta/1"
_META = "__meta__"


def pack(meta: dict[str, Any], arrays: dict[str, np.ndarray], *, fmt: str = FORMAT) -> bytes:
    buf = io.BytesIO()
    blob = json.dumps({**meta, "format": fmt}, sort_keys=True).encode()
    np.savez(buf, **{_META: np.frombuffer(blob, dtype=np.uint8)}, **arrays)
    return buf.getvalue()


def unpack(data: bytes, *, formats: tuple[str, ...] = (FORMAT,)) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
        meta = json.loads(arrays.pop(_META).tobytes().decode())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise StateFormatError(f"not a models checkpoint: {exc}") from exc
    if meta.get("format") not in formats:
        raise StateFormatError(f"unsupported checkpoint format {meta.get('format')!r}")
    return meta, arrays
