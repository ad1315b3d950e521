"""The stats tick: rollup → report → thinned snapshot history → live push after commit."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import numpy as np
from django.db import connection, transaction
from django.utils import timezone

from experiments import observability, realtime
from experiments.models import AllocationEpoch, Experiment, StatsSnapshot
from experiments.selectors import dashboard as dashboard_selectors
from experiments.selectors import results as result_selectors
from experiments.selectors import rollups as rollup_selectors
from experiments.services import metric_fold
from experiments.services import webhooks as webhook_services

log = logging.getLogger(__name__)

# History keeps at most one snapshot per this many seconds; the newest row is
# rewritten in place in between, so it always holds the latest numbers and the
# always-valid state that the next tick continues from.
SNAPSHOT_SPACING_S = 5.0


def allocation_epoch_record(*, experiment: Experiment, weights: dict[str, float] | None = None) -> AllocationEpoch:
    """Records the weights of the experiment's current allocation epoch if nobody has yet (idempotent)."""
    if weights is None:
        arms = result_selectors.experiment_arms(experiment=experiment)
        weights = rollup_selectors.arm_effective_weights(experiment=experiment, arms=arms)
    row, _ = AllocationEpoch.objects.get_or_create(
        experiment=experiment,
        epoch=experiment.allocation_epoch,
        defaults={"weights": weights, "started_at": timezone.now()},
    )
    return row


# The planner cannot estimate "impressions <> folded_impressions" (it guesses 99.5% of rows) and
# would scan the whole rollup; rollup_fold turns seq and bitmap scans off for its transaction so
# it walks the small partial index, and a plain index scan (unlike a bitmap scan) also marks the
# index entries of vacuumable row versions dead. It turns JIT off too: the covariate query
# (metric_fold) is estimated at ~150 cost units per batch user (its per-user subplans over every
# impression partition), so a batch of 1,000 rows passes jit_above_cost and 5,000 the inlining and
# optimisation thresholds; compiling it took 0.2 s and 1.8 s respectively on the bench machine
# (bench/bench_stats_db.py), for a query that runs in milliseconds. Every fold query is index probes.
_FOLD_PICK_SQL = """
SELECT id, arm_id, user_id, epoch, impressions, clicks, folded_impressions, folded_clicks
  FROM experiments_armuserstat
 WHERE arm_id = ANY(%s)
   AND (NOT (impressions = folded_impressions) OR NOT (clicks = folded_clicks))
   FOR UPDATE
"""

_FOLD_MARK_SQL = """
UPDATE experiments_armuserstat s
   SET folded_impressions = v.n, folded_clicks = v.c
  FROM unnest(%s::bigint[], %s::int[], %s::int[]) AS v(id, n, c)
 WHERE s.id = v.id
"""

# Of the rows new to the fold, those whose user has no earlier period on the arm: SRM's newcomers.
_FOLD_NEWCOMERS_SQL = """
SELECT v.arm_id, v.epoch, count(*)
  FROM unnest(%s::bigint[], %s::bigint[], %s::int[]) AS v(arm_id, user_id, epoch)
 WHERE NOT EXISTS (
       SELECT 1 FROM experiments_armuserstat q
        WHERE q.arm_id = v.arm_id AND q.user_id = v.user_id AND q.epoch < v.epoch AND q.impressions > 0)
 GROUP BY v.arm_id, v.epoch
"""

# The six-sum algebra in SQL; ``stats.ClusteredRatioSummary.__add__`` states it in Python. Keep them in step.
_FOLD_ADD_SQL = """
INSERT INTO experiments_armepochsums (arm_id, epoch, n_users, sum_n, sum_c, sum_nn, sum_cc, sum_nc, newcomers)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (arm_id, epoch) DO UPDATE SET
    n_users = experiments_armepochsums.n_users + EXCLUDED.n_users,
    sum_n = experiments_armepochsums.sum_n + EXCLUDED.sum_n,
    sum_c = experiments_armepochsums.sum_c + EXCLUDED.sum_c,
    sum_nn = experiments_armepochsums.sum_nn + EXCLUDED.sum_nn,
    sum_cc = experiments_armepochsums.sum_cc + EXCLUDED.sum_cc,
    sum_nc = experiments_armepochsums.sum_nc + EXCLUDED.sum_nc,
    newcomers = experiments_armepochsums.newcomers + EXCLUDED.newcomers
"""


def rollup_fold(*, arm_ids: list[int]) -> int:
    """Adds the rollup rows changed since the last fold into ArmEpochSums; returns how many rows it folded.

    The outcome rollup and CUPED's sums are folded in the same transaction (``services.metric_fold``).

    A user going from (n, c) to (n', c') moves Σn² by n'² − n² and so on
    (``stats.user_update_delta``), so the running sums stay exact. The changed rows
    are found through a partial index and locked while they are marked folded, so a
    concurrent serving write is either folded now or left for the next tick, never
    lost or counted twice. Call it inside the transaction that holds the experiment lock.
    """
    if not arm_ids:
        return 0
    if not connection.in_atomic_block:
        raise RuntimeError("rollup_fold must run inside a transaction (its row locks and SET LOCAL are per transaction)")
    with connection.cursor() as cur:
        cur.execute("SET LOCAL enable_seqscan = off")
        cur.execute("SET LOCAL enable_bitmapscan = off")
        cur.execute("SET LOCAL jit = off")
        metric_fold.outcome_fold(cur, arm_ids=list(arm_ids))  # first: its purchasers' rows are then folded below
        cur.execute(_FOLD_PICK_SQL, [list(arm_ids)])
        rows = cur.fetchall()
        if not rows:
            _fold_settings_reset(cur)
            return 0
        ids, arms, users, epochs, n, c, fn, fc = (np.array(col, dtype=np.int64) for col in zip(*rows, strict=True))
        cur.execute(_FOLD_MARK_SQL, [ids.tolist(), n.tolist(), c.tolist()])
        new = (fn == 0) & (n > 0)
        newcomers: dict[tuple[int, int], int] = {}
        if new.any():
            cur.execute(_FOLD_NEWCOMERS_SQL, [arms[new].tolist(), users[new].tolist(), epochs[new].tolist()])
            newcomers = {(a, e): k for a, e, k in cur.fetchall()}
        # Per user (n, c) -> (n', c'), as ``stats.user_update_delta``, summed per (arm, period).
        deltas = []
        for arm_id, epoch in sorted(set(zip(arms.tolist(), epochs.tolist(), strict=True))):
            m = (arms == arm_id) & (epochs == epoch)
            nm, cm, fnm, fcm = n[m], c[m], fn[m], fc[m]
            deltas.append((
                arm_id, epoch, int(new[m].sum()), int((nm - fnm).sum()), int((cm - fcm).sum()),
                int((nm * nm - fnm * fnm).sum()), int((cm * cm - fcm * fcm).sum()), int((nm * cm - fnm * fcm).sum()),
                newcomers.get((arm_id, epoch), 0),
            ))
        cur.executemany(_FOLD_ADD_SQL, deltas)
        metric_fold.cuped_fold(cur, arms=arms, users=users, epochs=epochs, n=n, c=c, fn=fn, fc=fc, new=new)
        _fold_settings_reset(cur)
    return len(rows)


def _fold_settings_reset(cur) -> None:
    """Back to the planner settings the rest of the transaction had before the fold."""
    cur.execute("SET LOCAL enable_seqscan = on")
    cur.execute("SET LOCAL enable_bitmapscan = on")
    cur.execute("SET LOCAL jit TO DEFAULT")


def snapshot_compact(payload: dict) -> dict:
    """A history row: the chart point and its identity, without the full report."""
    return {key: payload[key] for key in ("point", "seq", "computed_at", "experiment") if key in payload}


def stats_tick(*, experiment_id: int) -> realtime.StatsEvent:
    """Computes, stores (thinned) and, after commit, publishes one tick; returns the published event.

    Ticks of one experiment are serialised by a row lock, so the always-valid
    state is carried from each tick to the next even if two workers overlap.
    The lock is FOR NO KEY UPDATE so impressions (whose foreign key takes a key
    share lock on the experiment) are never blocked by a tick.
    """
    started = time.perf_counter()
    with transaction.atomic():
        experiment = Experiment.objects.select_for_update(no_key=True).get(pk=experiment_id)
        allocation_epoch_record(experiment=experiment)
        folded = rollup_fold(arm_ids=list(experiment.arms.values_list("id", flat=True)))
        last_two = result_selectors.snapshot_last_two(experiment=experiment)
        previous = last_two[0].payload if last_two else None
        now = timezone.now()
        payload = result_selectors.experiment_stats_payload(experiment=experiment, previous=previous, now=now)
        webhook_services.stats_notifications(experiment=experiment, previous=previous, payload=payload)
        replaces_last = len(last_two) == 2 and (
            last_two[0].computed_at - last_two[1].computed_at < timedelta(seconds=SNAPSHOT_SPACING_S)
        )
        if replaces_last:
            head = last_two[0]
            head.computed_at = now
            head.payload = payload
            head.save(update_fields=["computed_at", "payload"])
        else:
            if last_two:
                # Only the newest row needs the full report (it seeds the next tick and the
                # exports); older rows keep what the charts plot, ~1 KB instead of ~15 KB.
                StatsSnapshot.objects.filter(pk=last_two[0].pk).update(payload=snapshot_compact(last_two[0].payload))
            StatsSnapshot.objects.create(experiment=experiment, computed_at=now, payload=payload)
        event = realtime.stats_event(
            experiment=experiment.slug,
            stats=payload,
            figure_updates=dashboard_selectors.figure_updates(payload["point"], payload["report"]["arm_order"], payload),
            replaces_last=replaces_last,
        )
        slug = experiment.slug
        transaction.on_commit(lambda: realtime.publish(slug, event))
    observability.STATS_TICK_SECONDS.labels(slug).observe(time.perf_counter() - started)
    log.info(
        "stats_tick experiment=%s seq=%s folded=%s compute_ms=%s replaced=%s",
        slug, payload["seq"], folded, payload["compute_ms"], replaces_last,
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
