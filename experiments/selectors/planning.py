"""The planning calculator's inputs: the latest report and each arm's current rate of impressions (from snapshots)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from experiments.models import Experiment, StatsSnapshot
from experiments.stats.planning import experiment_plan

RATE_WINDOW = timedelta(hours=1)
MIN_SPAN_S = 30.0


def arm_rates(*, experiment: Experiment) -> dict[str, float]:
    """Impressions per second per arm over the last hour of stored ticks (today's traffic, not the average since the
    start). Read from the stats snapshots, never from the impressions."""
    newest = StatsSnapshot.objects.filter(experiment=experiment).order_by("-computed_at").first()
    if newest is None:
        return {}
    older = (StatsSnapshot.objects.filter(experiment=experiment, computed_at__gte=newest.computed_at - RATE_WINDOW)
             .order_by("computed_at").first())
    span = (newest.computed_at - older.computed_at).total_seconds() if older else 0.0
    # Older rows keep only the chart point (stats_tick.snapshot_compact), which has each arm's impressions.
    now_arms = newest.payload["point"]["arms"]
    if span < MIN_SPAN_S:
        started = experiment.started_at
        span = (newest.computed_at - started).total_seconds() if started else 0.0
        if span <= 0:
            return {}
        return {name: row["impressions"] / span for name, row in now_arms.items()}
    then = older.payload["point"]["arms"]
    return {name: max(0.0, row["impressions"] - then.get(name, {}).get("impressions", 0)) / span
            for name, row in now_arms.items()}


def experiment_plan_current(*, experiment: Experiment, mde: float, alpha: float, power: float) -> dict[str, Any]:
    """The plan, with the expected finish as a time; ``{"error": …}`` when the data cannot support one yet."""
    newest = StatsSnapshot.objects.filter(experiment=experiment).order_by("-computed_at").first()
    if newest is None:
        return {"error": "No statistics yet: start the experiment and let it collect impressions."}
    report = newest.payload["report"]
    try:
        plan = experiment_plan(arms=report["arms"], control=report["control"], mde=mde, alpha=alpha, power=power,
                               rates=arm_rates(experiment=experiment))
    except ValueError as exc:
        return {"error": str(exc)[:1].upper() + str(exc)[1:] + "."}
    left = plan["seconds_left"]
    plan["finish_at"] = None if left is None else timezone.now() + timedelta(seconds=left)
    return plan
