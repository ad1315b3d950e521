"""Building and restoring arms for serving (and for training's version 0).

Version 0 of an arm is a fresh arm built from its kind and params with the
fixed seed :func:`arm_seed` (its database id), so every process that builds
version 0 gets the same model. Later versions come from ``ModelCheckpoint.state``.
The ``models`` package, and TensorFlow with it, is only imported here, lazily.
"""

from __future__ import annotations

from typing import Any


def arm_seed(*, arm_id: int) -> int:
    return int(arm_id)


def arm_build(*, kind: str, params: dict[str, Any], arm_id: int) -> Any:
    """A fresh arm (version 0). Raises ValueError/KeyError for an unknown kind or bad params."""
    from models.registry import make_arm

    return make_arm(kind, params or {}, arm_seed(arm_id=arm_id))


def arm_restore(*, kind: str, state: bytes) -> Any:
    """The arm stored in a checkpoint; raises if the bytes are not a checkpoint of ``kind``."""
    from models.base import Arm
    from models.errors import StateFormatError

    arm = Arm.from_bytes(bytes(state))
    if arm.kind != kind:
        raise StateFormatError(f"checkpoint holds a {arm.kind!r} arm, expected {kind!r}")
    return arm
