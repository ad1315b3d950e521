"""recsite model arms: pure NumPy/TensorFlow, no Django (see models/README.md).

``import models`` is cheap: TensorFlow is imported only when a TF arm is built.
"""

from models.errors import ArmError, BadBatchError, DivergedUpdateError, StateFormatError
from models.types import Batch, Context, Ranking, Users

__all__ = [
    "ArmError",
    "BadBatchError",
    "Batch",
    "Context",
    "DivergedUpdateError",
    "Ranking",
    "StateFormatError",
    "Users",
]
