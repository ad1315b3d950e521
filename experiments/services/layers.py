"""Mutually exclusive layers: experiments of one layer split the layer's buckets (experiments/layer_models.py).

Pure parts first (free ranges, first fit, routing a bucket), then the two writes: making a layer and giving
an experiment its range when it is made. A user's layer bucket is :func:`~experiments.services.assignment.
bucket_of` with the layer's salt; the experiment that owns the bucket serves them, and every request that
names the layer, or any experiment of it, is routed so. Buckets no serving experiment owns serve nobody
(``layer_unallocated``): the shop shows its own default there.
"""

from __future__ import annotations

import bisect
import math
import secrets
from collections.abc import Sequence
from typing import Any

from django.db import IntegrityError, transaction

from experiments.errors import ApplicationError
from experiments.models import Experiment, Layer, LayerAllocation
from experiments.services.assignment import N_BUCKETS
from experiments.services.decision_core import require_permission
from experiments.services.identifiers import names_check

Range = tuple[int, int]


def free_ranges(taken: Sequence[Range]) -> list[Range]:
    """The gaps of [0, N_BUCKETS) between the taken ranges (which must not overlap)."""
    out: list[Range] = []
    at = 0
    for start, end in sorted(taken):
        if start > at:
            out.append((at, start))
        at = max(at, end)
    if at < N_BUCKETS:
        out.append((at, N_BUCKETS))
    return out


def range_for(taken: Sequence[Range], share: float | None) -> Range | None:
    """The range a new experiment gets: the first gap that fits ``share`` (of all buckets), or with
    ``share=None`` the largest gap; None when nothing fits."""
    gaps = free_ranges(taken)
    if not gaps:
        return None
    if share is None:
        return max(gaps, key=lambda g: (g[1] - g[0], -g[0]))
    size = max(1, round(share * N_BUCKETS))
    for start, end in gaps:
        if end - start >= size:
            return start, start + size
    return None


def route(*, starts: Sequence[int], ends: Sequence[int], owners: Sequence[Any], bucket: int) -> Any | None:
    """The owner of ``bucket`` among ranges sorted by start (non-overlapping), or None."""
    i = bisect.bisect_right(starts, bucket) - 1
    if i >= 0 and bucket < ends[i]:
        return owners[i]
    return None


def layer_create(*, slug: Any, name: Any = "", user, salt: Any = None) -> Layer:
    require_permission(user, "create layers")
    names_check(slug=slug, name=name, salt=salt)
    try:
        with transaction.atomic():
            return Layer.objects.create(slug=slug, name=name or slug, salt=salt or secrets.token_hex(8))
    except IntegrityError:
        raise ApplicationError("layer_exists", f"A layer {slug!r} exists already.", status=409, field="slug") from None


def layer_share_clean(share: Any) -> float | None:
    if share is None:
        return None
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not math.isfinite(share) \
            or not 0 < share <= 1:
        raise ApplicationError("invalid_share", "layer_share is a fraction of the layer's users in (0, 1].",
                               field="layer_share")
    return float(share)


def layer_allocate(*, experiment: Experiment, layer_slug: str, share: float | None) -> LayerAllocation:
    """Gives ``experiment`` its range of the layer (inside the caller's transaction; the layer row is locked, so
    concurrent creations take turns, and the exclusion constraint is the last word)."""
    layer = Layer.objects.select_for_update().filter(slug=layer_slug).first()
    if layer is None:
        raise ApplicationError("layer_not_found", f"no layer {layer_slug!r} (POST /api/v1/layers first)",
                               status=404, field="layer")
    taken = list(LayerAllocation.objects.filter(layer=layer).values_list("start", "end"))
    found = range_for(taken, share)
    if found is None:
        free = sum(e - s for s, e in free_ranges(taken)) / N_BUCKETS
        raise ApplicationError("layer_full", f"layer {layer.slug!r} has no free range of that size (free: "
                               f"{free:.2%}, in {len(free_ranges(taken))} gaps)", status=409, field="layer_share")
    return LayerAllocation.objects.create(layer=layer, experiment=experiment, start=found[0], end=found[1])
