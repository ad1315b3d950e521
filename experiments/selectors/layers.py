"""Reads of layers as the operator API shows them: each layer's experiments, their ranges, and what is free."""

from __future__ import annotations

from typing import Any

from experiments.models import Experiment, Layer, LayerAllocation
from experiments.services.assignment import N_BUCKETS
from experiments.services.layers import free_ranges


def allocation_of(experiment: Experiment) -> LayerAllocation | None:
    try:
        return experiment.layer_allocation
    except LayerAllocation.DoesNotExist:
        return None


def allocation_summary(allocation: LayerAllocation | None) -> dict[str, Any] | None:
    if allocation is None:
        return None
    return {"slug": allocation.layer.slug, "start": allocation.start, "end": allocation.end,
            "share": (allocation.end - allocation.start) / N_BUCKETS}


def layer_summary(layer: Layer, allocations: list[LayerAllocation]) -> dict[str, Any]:
    taken = [(a.start, a.end) for a in allocations]
    return {
        "slug": layer.slug,
        "name": layer.name,
        "created_at": layer.created_at.isoformat(),
        "experiments": [
            {"slug": a.experiment.slug, "status": a.experiment.status, "start": a.start, "end": a.end,
             "share": (a.end - a.start) / N_BUCKETS}
            for a in sorted(allocations, key=lambda a: a.start)
        ],
        "free": [{"start": s, "end": e} for s, e in free_ranges(taken)],
        "free_share": sum(e - s for s, e in free_ranges(taken)) / N_BUCKETS,
    }


def layer_summaries() -> list[dict[str, Any]]:
    layers = list(Layer.objects.order_by("slug"))
    by_layer: dict[int, list[LayerAllocation]] = {}
    for allocation in LayerAllocation.objects.select_related("experiment").filter(layer__in=layers):
        by_layer.setdefault(allocation.layer_id, []).append(allocation)
    return [layer_summary(layer, by_layer.get(layer.id, [])) for layer in layers]
