"""Lazy TensorFlow import: web and beat processes must start without TF."""

from __future__ import annotations

import os
from typing import Any


def tf_module() -> Any:
    """Import and return ``tensorflow``, quietening its C++ logging politely."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf
