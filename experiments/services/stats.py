"""The stats tick: rollup → report → thinned snapshot history → live push after commit."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from experiments import realtime
from experiments.models import AllocationEpoch, Experiment, StatsSnapshot
from experiments.selectors import stats as stats_selectors

log = logging.getLogger(__name__)

# History keeps at most one snapshot per this many seconds; the newest row is
# rewritten in place in between, so it always holds the latest numbers and the
# always-valid state that the next tick continues from.
SNAPSHOT_SPACING_S = 5.0


def allocation_epoch_record(*, experiment: Experiment, weights: dict[str, float] | None = None) -> AllocationEpoch:
    """Records the weights of the experiment's current allocation epoch if nobody has yet (idempotent)."""
    if weights is None:
        arms = stats_selectors.experiment_arms(experiment=experiment)
        weights = stats_selectors.arm_effective_weights(experiment=experiment, arms=arms)
    row, _ = AllocationEpoch.objects.get_or_create(
        experiment=experiment,
        epoch=experiment.allocation_epoch,
        defaults={"weights": weights, "started_at": timezone.now()},
    )
    return row


def stats_tick(*, experiment_id: int) -> dict:
    """Computes, stores (thinned) and, after commit, publishes one tick; returns the published event.

    Ticks of one experiment are serialised by a row lock, so the always-valid
    state is carried from each tick to the next even if two workers overlap.
    The lock is FOR NO KEY UPDATE so impressions (whose foreign key takes a key
    share lock on the experiment) are never blocked by a tick.
    """
    with transaction.atomic():
        experiment = Experiment.objects.select_for_update(no_key=True).get(pk=experiment_id)
        allocation_epoch_record(experiment=experiment)
        last_two = stats_selectors.snapshot_last_two(experiment=experiment)
        previous = last_two[0].payload if last_two else None
        now = timezone.now()
        payload = stats_selectors.experiment_stats_payload(experiment=experiment, previous=previous, now=now)
        replaces_last = len(last_two) == 2 and (
            last_two[0].computed_at - last_two[1].computed_at < timedelta(seconds=SNAPSHOT_SPACING_S)
        )
        if replaces_last:
            head = last_two[0]
            head.computed_at = now
            head.payload = payload
            head.save(update_fields=["computed_at", "payload"])
        else:
            StatsSnapshot.objects.create(experiment=experiment, computed_at=now, payload=payload)
        event = {
            "type": "stats",
            "experiment": experiment.slug,
            "replaces_last": replaces_last,
            "stats": payload,
            "figure_updates": stats_selectors.figure_updates(payload["point"], payload["report"]["arm_order"]),
        }
        slug = experiment.slug
        transaction.on_commit(lambda: realtime.publish(slug, event))
    log.info(
        "stats_tick experiment=%s seq=%s compute_ms=%s replaced=%s",
        slug, payload["seq"], payload["compute_ms"], replaces_last,
    )
    return event


def stats_tick_running() -> dict[str, int]:
    """One tick for every running experiment (and concluded ones, so promotions show); slug → seq."""
    done: dict[str, int] = {}
    for exp_id, slug in Experiment.objects.exclude(status=Experiment.Status.DRAFT).values_list("id", "slug"):
        try:
            done[slug] = stats_tick(experiment_id=exp_id)["stats"]["seq"]
        except Exception:
            # One broken experiment must not stop the others' dashboards.
            log.exception("stats_tick_failed experiment=%s", slug)
    return done
