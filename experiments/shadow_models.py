"""Shadow (apprentice) arms' log (a model of the ``experiments`` app, imported by ``experiments.models``).

An arm in ``shadow`` status ranks every request its experiment serves without being shown
(experiments/services/shadow.py). One row per served request and shadow arm records, slot by slot, what the
shadow would have done: its own item and score at each position, and its own probability of the item that
*was* shown there, beside the served arm's logged propensity. One row per request (arrays over the slots), not
per shown item: a shadow arm's log costs a tenth of the impression log's writes. Training learns from the
served arms' clicks weighted by the ratio of the two probabilities (experiments/services/shadow_training.py);
the dashboard's doubly robust estimate reads the same rows (experiments/selectors/shadow.py).
"""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.db.models.functions import Now


class ShadowRanking(models.Model):
    id = models.BigAutoField(primary_key=True)
    arm = models.ForeignKey("experiments.Arm", on_delete=models.CASCADE, related_name="shadow_rankings",
                            db_index=False)
    experiment = models.ForeignKey("experiments.Experiment", on_delete=models.CASCADE, related_name="+",
                                   db_index=False)
    served_arm = models.ForeignKey("experiments.Arm", on_delete=models.CASCADE, related_name="+", db_index=False)
    request_id = models.UUIDField()
    user = models.ForeignKey("experiments.ShopUser", on_delete=models.CASCADE, related_name="+", db_index=False)
    # Slot j (position j + 1) of the served slate: its impression (no database foreign key: impressions are
    # partitioned by day), item, the served arm's propensity and the shadow's; then the shadow's own choice there.
    impression_ids = ArrayField(models.BigIntegerField())
    items = ArrayField(models.BigIntegerField())
    logged_propensities = ArrayField(models.FloatField())
    target_propensities = ArrayField(models.FloatField())
    shadow_items = ArrayField(models.BigIntegerField())
    shadow_scores = ArrayField(models.FloatField())
    model_version = models.IntegerField(default=0)
    hist_clicked = ArrayField(models.BigIntegerField(), null=True, blank=True)
    hist_impressed = ArrayField(models.BigIntegerField(), null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            # A click finds its shadow rows through its impression's request.
            models.UniqueConstraint(fields=["arm", "request_id"], name="shadowranking_unique_arm_request"),
            models.CheckConstraint(condition=Q(items__len__gte=1), name="shadowranking_not_empty"),
        ]
        indexes = [
            models.Index(fields=["arm", "id"], name="shadowranking_arm_id"),  # training's cursor, the estimate
            models.Index(fields=["created_at"], name="shadowranking_created"),  # retention
        ]
