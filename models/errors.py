"""Exceptions raised by the arms.

All inherit from :class:`ArmError` so callers (the Celery trainer) can catch the
family; the specific classes tell *why* a batch was refused.
"""

from __future__ import annotations


class ArmError(Exception):
    """Base class of every error raised by ``models``."""


class BadBatchError(ArmError, ValueError):
    """The input itself is unusable: NaN/inf, wrong shape or dtype, bad labels.

    Raised before any state is touched.
    """


class DivergedUpdateError(ArmError, FloatingPointError):
    """The update would have produced a non-finite loss or weight.

    The arm validates the new values before applying them, so its state is
    exactly what it was before the call.
    """


class StateFormatError(ArmError, ValueError):
    """``from_bytes`` was given bytes that are not a checkpoint of this package."""
