"""Building and restoring arms for serving (and for training's version 0).

Version 0 of an arm is a fresh arm built from its kind and params with the
fixed seed :func:`arm_seed` (its database id), so every process that builds
version 0 gets the same model. Later versions come from ``ModelCheckpoint.state``.
The arm classes (and TensorFlow with them) are imported here lazily; ``models.base`` is light.
"""

from __future__ import annotations

from typing import Any

from models.base import Arm


def arm_seed(*, arm_id: int) -> int:
    return int(arm_id)


def arm_build(*, kind: str, params: dict[str, Any], arm_id: int) -> Arm:
    """A fresh arm (version 0). Raises ValueError/KeyError for an unknown kind or bad params."""
    from models.registry import make_arm

    return make_arm(kind, params or {}, arm_seed(arm_id=arm_id))


def arm_restore(*, kind: str, state: bytes) -> Arm:
    """The arm stored in a checkpoint; raises if the bytes are not a checkpoint of ``kind``."""
    from models.errors import StateFormatError
    from models.registry import arm_from_bytes

    arm = arm_from_bytes(bytes(state))
    if arm.kind != kind:
        raise StateFormatError(f"checkpoint holds a {arm.kind!r} arm, expected {kind!r}")
    return arm
