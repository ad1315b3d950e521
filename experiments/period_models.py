"""Allocation periods (a model of the ``experiments`` app, imported by ``experiments.models``): the weights in
force during each period of an experiment, and each arm's running clustered sums per period, which the
statistics are stratified by (experiments/services/stats_tick.py)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class AllocationEpoch(models.Model):
    """The traffic weights in force during one allocation period of an experiment.

    Statistics are stratified by period and the sample-ratio check compares each
    period's traffic with the weights recorded here (arm name → effective weight).
    """

    experiment = models.ForeignKey("experiments.Experiment", on_delete=models.CASCADE, related_name="allocation_epochs")
    epoch = models.IntegerField()
    weights = models.JSONField(default=dict)
    started_at = models.DateTimeField()
    # The decision that opened this period (null for the first period, and for periods recorded by a tick).
    decision = models.ForeignKey("experiments.Decision", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["experiment", "epoch"], name="allocationepoch_unique"),
            models.CheckConstraint(condition=Q(epoch__gte=0), name="allocationepoch_epoch_non_negative"),
        ]


class ArmEpochSums(models.Model):
    """Running clustered sums of one arm in one allocation period, folded from ArmUserStat by the stats tick.

    Each tick adds only the rows that changed since the last one, so a tick costs
    the traffic of one second, not the size of the experiment (docs/benchmarks.md).
    ``newcomers``: users whose first rollup row on the arm is in this period (the SRM unit).
    """

    arm = models.ForeignKey("experiments.Arm", on_delete=models.CASCADE, related_name="epoch_sums")
    epoch = models.IntegerField()
    n_users = models.BigIntegerField(default=0)
    sum_n = models.BigIntegerField(default=0)
    sum_c = models.BigIntegerField(default=0)
    sum_nn = models.BigIntegerField(default=0)
    sum_cc = models.BigIntegerField(default=0)
    sum_nc = models.BigIntegerField(default=0)
    newcomers = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["arm", "epoch"], name="armepochsums_unique")]
