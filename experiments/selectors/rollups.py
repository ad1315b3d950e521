"""Reads of the clustered-statistics rollups: sums per arm and allocation period, and the inputs of a report.

Two levels of aggregation keep a tick independent of the experiment's size: serving
keeps ``ArmUserStat`` (one row per arm × user × allocation period) in the same
transaction as each impression and click, and each stats tick folds the rows that
changed since the last tick into ``ArmEpochSums`` (``services.stats_tick.rollup_fold``).
The six sufficient statistics per arm and period (docs/statistics.md) are then a
few rows to read; the ``*_scan`` functions recompute them from the whole rollup.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection

from experiments.models import AllocationEpoch, Arm, ArmEpochSums, Experiment
from experiments.services.assignment import holdout_split
from experiments.stats import AllocationPeriod, ClusteredRatioSummary

SUM_FIELDS = ("n_users", "sum_n", "sum_c", "sum_nn", "sum_cc", "sum_nc")
_SCAN_SUMS_SQL = """
    SELECT arm_id, epoch, count(*),
           sum(impressions), sum(clicks),
           sum(impressions::bigint * impressions), sum(clicks::bigint * clicks),
           sum(impressions::bigint * clicks)
      FROM experiments_armuserstat
     WHERE arm_id = ANY(%s) AND impressions > 0
     GROUP BY arm_id, epoch
"""

_SCAN_FIRSTS_SQL = """
    SELECT arm_id, first_epoch, count(*) FROM (
        SELECT arm_id, user_id, min(epoch) AS first_epoch
          FROM experiments_armuserstat
         WHERE arm_id = ANY(%s) AND impressions > 0
         GROUP BY arm_id, user_id
    ) AS firsts
     GROUP BY arm_id, first_epoch
"""


def arm_epoch_sums(*, arm_ids: list[int]) -> dict[tuple[int, int], ClusteredRatioSummary]:
    """(arm id, epoch) → the clustered sums of that arm in that period, as of the last stats tick.

    Reads the running sums the tick folds incrementally (``services.stats_tick.rollup_fold``):
    a few rows per arm, whatever the size of the experiment.
    """
    rows = ArmEpochSums.objects.filter(arm_id__in=arm_ids, n_users__gt=0).values_list(
        "arm_id", "epoch", "n_users", "sum_n", "sum_c", "sum_nn", "sum_cc", "sum_nc"
    )
    return {
        (arm_id, epoch): ClusteredRatioSummary(int(n), float(sn), float(sc), float(snn), float(scc), float(snc))
        for arm_id, epoch, n, sn, sc, snn, scc, snc in rows
    }


def arm_epoch_newcomers(*, arm_ids: list[int]) -> dict[tuple[int, int], int]:
    """(arm id, epoch) → users first seen on the arm in that period, as of the last stats tick."""
    rows = ArmEpochSums.objects.filter(arm_id__in=arm_ids).values_list("arm_id", "epoch", "newcomers")
    return {(arm_id, epoch): int(n) for arm_id, epoch, n in rows if n}


def arm_epoch_sums_scan(*, arm_ids: list[int]) -> dict[tuple[int, int], ClusteredRatioSummary]:
    """The same sums recomputed by one grouped query over the whole rollup (verification, benchmarks).

    Squares are taken in bigint (a user with 50 000 impressions squares to 2.5e9,
    past int4), and summed as numeric so no total can overflow.
    """
    if not arm_ids:
        return {}
    with connection.cursor() as cur:
        cur.execute(_SCAN_SUMS_SQL, [list(arm_ids)])
        rows = cur.fetchall()
    return {
        (arm_id, epoch): ClusteredRatioSummary(int(n), float(sn), float(sc), float(snn), float(scc), float(snc))
        for arm_id, epoch, n, sn, sc, snn, scc, snc in rows
    }


def arm_first_epoch_users_scan(*, arm_ids: list[int]) -> dict[tuple[int, int], int]:
    """(arm id, epoch) → users first seen on that arm in that period: the units the SRM check counts.

    Recomputed over the whole rollup (verification, benchmarks); ticks use ``arm_epoch_newcomers``.

    Assignment is sticky, so users seen in a later period mostly arrived under
    earlier weights; only the newcomers of a period were split by its weights.
    """
    if not arm_ids:
        return {}
    with connection.cursor() as cur:
        cur.execute(_SCAN_FIRSTS_SQL, [list(arm_ids)])
        return {(arm_id, epoch): int(n) for arm_id, epoch, n in cur.fetchall()}


def arm_effective_weights(*, experiment: Experiment, arms: list[Arm]) -> dict[str, float]:
    """The split serving applies to new users now: a winner (or a stopped experiment's control) takes everything,
    paused or retired arms get nothing; a running holdout takes its share first."""
    if experiment.winner_id is not None:
        split = {arm.name: (1.0 if arm.id == experiment.winner_id else 0.0) for arm in arms}
    elif experiment.status == Experiment.Status.STOPPED and experiment.control_arm_id is not None:
        split = {arm.name: (1.0 if arm.id == experiment.control_arm_id else 0.0) for arm in arms}
    else:
        split = {arm.name: (arm.weight if arm.status == Arm.Status.ACTIVE else 0.0) for arm in arms}
    holdout = next((arm.name for arm in arms if arm.id == experiment.holdout_arm_id), None)
    if holdout is not None:
        split[holdout] = 0.0  # the holdout arm takes no one outside the holdout …
    if holdout is None or not experiment.holdout_running:
        return split
    return holdout_split(split, holdout=holdout, share=experiment.holdout_share)  # … and its share of everyone


@dataclass(frozen=True)
class StatsInputs:
    """Everything ``experiment_report`` needs, read at one moment."""

    arms: dict[str, ClusteredRatioSummary]
    periods: list[AllocationPeriod]
    weights: dict[str, float]
    control: str
    epochs: tuple[int, ...] = ()  # the epoch of each of ``periods``


def experiment_stats_inputs(*, experiment: Experiment, arms: list[Arm]) -> StatsInputs:
    """Per-arm totals and per-period summaries of an experiment from the rollup.

    The whole-experiment summary of an arm adds its period summaries, so a user
    active in two periods counts as two clusters there; the comparisons use the
    per-period (stratified) estimates where that is exact.
    """
    ids = [arm.id for arm in arms]
    name_of = {arm.id: arm.name for arm in arms}
    sums = arm_epoch_sums(arm_ids=ids)
    epochs = sorted({epoch for _, epoch in sums})
    recorded = {e.epoch: e.weights for e in AllocationEpoch.objects.filter(experiment=experiment)}
    current = arm_effective_weights(experiment=experiment, arms=arms)
    firsts = arm_epoch_newcomers(arm_ids=ids) if len(epochs) > 1 else None

    totals = {arm.name: ClusteredRatioSummary.empty() for arm in arms}
    periods: list[AllocationPeriod] = []
    for epoch in epochs:
        per_arm = {arm.name: sums.get((arm.id, epoch), ClusteredRatioSummary.empty()) for arm in arms}
        for name, summary in per_arm.items():
            totals[name] = totals[name] + summary
        weights = {name: float(recorded.get(epoch, current).get(name, 0.0)) for name in per_arm}
        if sum(weights.values()) <= 0:
            weights = current
        assigned = None
        if firsts is not None:
            assigned = {name: firsts.get((arm.id, epoch), 0) for arm in arms for name in [arm.name]}
        periods.append(AllocationPeriod(weights=weights, arms=per_arm, assigned=assigned, label=f"epoch {epoch}"))
    control = name_of.get(experiment.control_arm_id) or arms[0].name
    return StatsInputs(arms=totals, periods=periods, weights=current, control=control, epochs=tuple(epochs))
