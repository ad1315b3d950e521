"""Multiple comparisons: Holm's step-down adjustment (controls the family-wise
error rate for any dependence between the tests, e.g. arms sharing a control).

Holm, S. (1979). A simple sequentially rejective multiple test procedure.
Scand. J. Statist. 6, 65–70.
"""

from __future__ import annotations

import math
from collections.abc import Mapping


def holm_adjust(p_values: Mapping[str, float | None]) -> dict[str, float | None]:
    """Holm-adjusted p-values; ``None``/NaN entries are not tests and stay ``None``.

    Sorted ascending p₍₁₎ ≤ … ≤ p₍ₘ₎: adj₍ᵢ₎ = max_{j≤i} min(1, (m − j + 1)·p₍ⱼ₎).
    Rejecting where adj < α is exactly Holm's procedure at level α.
    """
    valid = {k: float(v) for k, v in p_values.items() if v is not None and not math.isnan(float(v))}
    for k, v in valid.items():
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"p-value of {k!r} must be in [0, 1], got {v!r}")
    m = len(valid)
    out: dict[str, float | None] = {k: None for k in p_values}
    running = 0.0
    for i, (k, v) in enumerate(sorted(valid.items(), key=lambda kv: (kv[1], kv[0]))):
        running = max(running, min(1.0, (m - i) * v))
        out[k] = running
    return out
