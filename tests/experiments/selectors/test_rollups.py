"""Rollup reads against the real database: clustered sums per arm and period, newcomers, report inputs."""

import numpy as np
import pytest
from django.db import models

from experiments.models import Arm
from experiments.selectors import results as result_selectors
from experiments.selectors import rollups as rollup_selectors
from experiments.services.stats_tick import rollup_fold
from experiments.stats import ClusteredRatioSummary
from tests.experiments.stats_support import add_rollup, make_experiment, random_counts

pytestmark = pytest.mark.django_db


def test_arm_epoch_sums_match_numpy_per_arm_and_epoch():
    experiment, (control, treat) = make_experiment()
    n0, c0 = random_counts(seed=1, users=50, ctr=0.1)
    n1, c1 = random_counts(seed=2, users=40, ctr=0.2)
    n2, c2 = random_counts(seed=3, users=30, ctr=0.3)
    add_rollup(arm=control, impressions=n0, clicks=c0, epoch=0)
    add_rollup(arm=treat, impressions=n1, clicks=c1, epoch=0)
    add_rollup(arm=treat, impressions=n2, clicks=c2, epoch=1)

    sums = rollup_selectors.arm_epoch_sums_scan(arm_ids=[control.id, treat.id])

    assert sums == {
        (control.id, 0): ClusteredRatioSummary.from_users(n0, c0),
        (treat.id, 0): ClusteredRatioSummary.from_users(n1, c1),
        (treat.id, 1): ClusteredRatioSummary.from_users(n2, c2),
    }


def test_squares_do_not_overflow_int4():
    experiment, (control, _) = make_experiment()
    add_rollup(arm=control, impressions=[100_000, 3], clicks=[60_000, 1])

    summary = rollup_selectors.arm_epoch_sums_scan(arm_ids=[control.id])[(control.id, 0)]

    assert summary.sum_nn == 100_000**2 + 9
    assert summary.sum_nc == 100_000 * 60_000 + 3


def test_first_epoch_users_count_newcomers_only():
    experiment, (control, treat) = make_experiment()
    returning = add_rollup(arm=control, impressions=[5, 6], clicks=[1, 0], epoch=0)
    from experiments.models import ArmUserStat

    ArmUserStat.objects.bulk_create([ArmUserStat(arm=control, user=u, epoch=1, impressions=2, clicks=0) for u in returning])
    add_rollup(arm=control, impressions=[1, 1, 1], clicks=[0, 0, 0], epoch=1, prefix="new")

    firsts = rollup_selectors.arm_first_epoch_users_scan(arm_ids=[control.id, treat.id])

    assert firsts == {(control.id, 0): 2, (control.id, 1): 3}


def test_folding_only_changed_rows_keeps_the_running_sums_equal_to_a_full_scan():
    from experiments.models import ArmUserStat

    experiment, (control, treat) = make_experiment()
    n0, c0 = random_counts(seed=4, users=60, ctr=0.2)
    users = add_rollup(arm=control, impressions=n0, clicks=c0, epoch=0)
    add_rollup(arm=treat, impressions=[4, 5], clicks=[1, 0], epoch=0)
    ids = [control.id, treat.id]

    first = rollup_fold(arm_ids=ids)
    ArmUserStat.objects.filter(arm=control, user__in=users[:10]).update(
        impressions=models.F("impressions") + 3, clicks=models.F("clicks") + 1
    )
    ArmUserStat.objects.bulk_create([ArmUserStat(arm=control, user=u, epoch=1, impressions=2, clicks=0) for u in users[:5]])
    add_rollup(arm=control, impressions=[7, 1], clicks=[2, 1], epoch=1, prefix="late")
    second = rollup_fold(arm_ids=ids)
    third = rollup_fold(arm_ids=ids)

    assert (first, second, third) == (62, 17, 0)
    assert rollup_selectors.arm_epoch_sums(arm_ids=ids) == rollup_selectors.arm_epoch_sums_scan(arm_ids=ids)
    assert rollup_selectors.arm_epoch_newcomers(arm_ids=ids) == rollup_selectors.arm_first_epoch_users_scan(arm_ids=ids)


def test_stats_inputs_total_is_sum_of_periods_and_weights_follow_status():
    experiment, (control, treat) = make_experiment()
    add_rollup(arm=control, impressions=[3, 4], clicks=[1, 1], epoch=0)
    add_rollup(arm=treat, impressions=[2], clicks=[2], epoch=0)
    add_rollup(arm=treat, impressions=[7], clicks=[0], epoch=1)
    Arm.objects.filter(pk=treat.pk).update(status=Arm.Status.PAUSED)
    arms = result_selectors.experiment_arms(experiment=experiment)
    rollup_fold(arm_ids=[control.id, treat.id])

    inputs = rollup_selectors.experiment_stats_inputs(experiment=experiment, arms=arms)

    assert inputs.control == "control"
    assert inputs.weights == {"control": 1.0, "treat": 0.0}
    assert [p.label for p in inputs.periods] == ["epoch 0", "epoch 1"]
    assert inputs.arms["treat"] == ClusteredRatioSummary.from_users(np.array([2, 7]), np.array([2, 0]))
    assert inputs.periods[1].assigned == {"control": 0, "treat": 1}
