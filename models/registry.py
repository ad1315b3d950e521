"""Kind string → arm class, with validated params; restoring any kind from its bytes.

The registry knows the arm classes; the arms know nothing of the registry (the
checkpoint names its kind, and :func:`arm_from_bytes` dispatches on it).
Importing this module does not import TensorFlow: arm modules import it lazily.
"""

from __future__ import annotations

from typing import Any

from models import serialization
from models.base import Arm
from models.errors import StateFormatError
from models.params import defaults, validate


def _classes() -> dict[str, type[Arm]]:
    from models.arms.deep_ctr import DeepCTRArm
    from models.arms.ftrl_logreg import FTRLLogRegArm
    from models.arms.neural_bandit import NeuralBanditArm
    from models.arms.popularity import PopularityArm
    from models.arms.q_learning import QLearningArm

    return {c.kind: c for c in (PopularityArm, FTRLLogRegArm, DeepCTRArm, NeuralBanditArm, QLearningArm)}


def kinds() -> dict[str, dict[str, Any]]:
    """Every available kind with its default params (for the admin and seeding)."""
    return {kind: defaults(cls.param_spec()) for kind, cls in _classes().items()}


def param_docs(kind: str) -> dict[str, str]:
    """One line of documentation per param of ``kind``."""
    spec = arm_class(kind).param_spec()
    return {name: p.doc for name, p in spec.items()}


def arm_class(kind: str) -> type[Arm]:
    classes = _classes()
    if not isinstance(kind, str) or kind not in classes:
        raise ValueError(f"unknown arm kind {kind!r}; available: {sorted(classes)}")
    return classes[kind]


def validate_params(kind: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """Complete and validated params for ``kind`` (ValueError names any problem)."""
    return validate(kind, arm_class(kind).param_spec(), params)


def make_arm(kind: str, params: dict[str, Any] | None = None, seed: int = 0) -> Arm:
    """Build a fresh arm. ``seed`` fixes weight initialisation only."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {seed!r}")
    cls = arm_class(kind)
    return cls(validate(kind, cls.param_spec(), params), seed)


def arm_from_bytes(data: bytes) -> Arm:
    """Restore any arm from :meth:`Arm.to_bytes` output (StateFormatError if it is not one)."""
    meta, arrays = serialization.unpack(data)
    return arm_from_state(meta, arrays)


def arm_from_state(meta: dict[str, Any], arrays: dict[str, Any]) -> Arm:
    """Restore any arm from its metadata and arrays (:meth:`Arm.state`, or a chain in :mod:`models.deltas`)."""
    kind = meta.get("kind")
    classes = _classes()
    if kind not in classes:
        raise StateFormatError(f"checkpoint holds an unknown arm kind {kind!r}")
    return classes[kind].from_state(meta, arrays)
