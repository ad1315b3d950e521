"""The credit of an interleaved slate (a model of the ``experiments`` app, imported by ``experiments.models``).

One row per (request, arm) whose team got a counted click: written by the click statement
(``experiments.services.clicks``) in the same transaction as the click, so the per-pair preference
(``experiments.selectors.interleaving``) reads clicked requests only, never the impression log.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class InterleaveCredit(models.Model):
    experiment = models.ForeignKey("experiments.Experiment", on_delete=models.CASCADE, related_name="+",
                                   db_index=False)
    request_id = models.UUIDField()
    arm = models.ForeignKey("experiments.Arm", on_delete=models.CASCADE, related_name="+", db_index=False)
    clicks = models.IntegerField(default=1)
    first_clicked_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["request_id", "arm"], name="interleavecredit_unique_request_arm"),
            models.CheckConstraint(condition=Q(clicks__gte=1), name="interleavecredit_clicks_positive"),
        ]
        indexes = [models.Index(fields=["experiment", "request_id"], name="interleavecredit_experiment")]
