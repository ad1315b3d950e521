"""Off-policy estimates of arms from logs (a model of the ``experiments`` app, imported by ``experiments.models``)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class OfflineEstimate(models.Model):
    """An off-policy estimate of an arm's CTR from logs; ``arm`` is null for a not-yet-created arm (``--kind``)."""

    experiment = models.ForeignKey("experiments.Experiment", on_delete=models.CASCADE, related_name="offline_estimates")
    arm = models.ForeignKey("experiments.Arm", null=True, blank=True, on_delete=models.SET_NULL, related_name="offline_estimates")
    arm_name = models.CharField(max_length=100)
    kind = models.CharField(max_length=50)
    model_version = models.IntegerField(default=0)
    # The estimator shown by default (DR when it ran): value and interval, as fractions.
    estimator = models.CharField(max_length=16)
    value = models.FloatField()
    ci_low = models.FloatField()
    ci_high = models.FloatField()
    effective_sample_size = models.FloatField()
    rows = models.IntegerField()
    result = models.JSONField(default=dict)
    computed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(ci_low__lte=models.F("ci_high")), name="offlineestimate_ci_ordered"),
            models.CheckConstraint(condition=Q(rows__gte=0), name="offlineestimate_rows_non_negative"),
        ]
        indexes = [models.Index(fields=["experiment", "arm_name", "-computed_at"], name="offline_estimate_latest")]
