"""Shadow (apprentice) arms' log (a model of the ``experiments`` app, imported by ``experiments.models``).

An arm in ``shadow`` status ranks every request its experiment serves without being shown
(experiments/services/shadow.py). For each shown item of the served slate it records what the shadow would
have done: its own item and score at that position, and its own probability of the item that *was* shown
there, beside the served arm's logged propensity. Training learns from the served arms' clicks weighted by
the ratio of the two (experiments/services/shadow_training.py); the dashboard's doubly robust estimate reads
the same rows (experiments/selectors/shadow.py).
"""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.db.models.functions import Now


class ShadowImpression(models.Model):
    id = models.BigAutoField(primary_key=True)
    arm = models.ForeignKey("experiments.Arm", on_delete=models.CASCADE, related_name="shadow_impressions",
                            db_index=False)
    experiment = models.ForeignKey("experiments.Experiment", on_delete=models.CASCADE, related_name="+",
                                   db_index=False)
    served_arm = models.ForeignKey("experiments.Arm", on_delete=models.CASCADE, related_name="+", db_index=False)
    # The shown impression (no database foreign key: impressions are partitioned by day; see Click).
    impression_id = models.BigIntegerField()
    request_id = models.UUIDField()
    user = models.ForeignKey("experiments.ShopUser", on_delete=models.CASCADE, related_name="+", db_index=False)
    item = models.ForeignKey("experiments.Item", on_delete=models.CASCADE, related_name="+", db_index=False)
    position = models.IntegerField()
    logged_propensity = models.FloatField()  # the served arm's probability of the shown item at this position
    target_propensity = models.FloatField()  # the shadow's probability of the same
    shadow_item = models.ForeignKey("experiments.Item", on_delete=models.CASCADE, related_name="+", db_index=False)
    shadow_score = models.FloatField()
    model_version = models.IntegerField(default=0)
    hist_clicked = ArrayField(models.BigIntegerField(), null=True, blank=True)
    hist_impressed = ArrayField(models.BigIntegerField(), null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            # Led by the impression: a click's shadow rows, and a dropped day's, are found by it.
            models.UniqueConstraint(fields=["impression_id", "arm"], name="shadowimpression_unique_impression_arm"),
            models.CheckConstraint(condition=Q(position__gte=1), name="shadowimpression_position_positive"),
            models.CheckConstraint(condition=Q(logged_propensity__gt=0) & Q(logged_propensity__lte=1),
                                   name="shadowimpression_logged_propensity_range"),
            models.CheckConstraint(condition=Q(target_propensity__gte=0) & Q(target_propensity__lte=1),
                                   name="shadowimpression_target_propensity_range"),
        ]
        indexes = [models.Index(fields=["arm", "id"], name="shadowimpression_arm_id")]
