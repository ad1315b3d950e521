"""An experiment's webhook and the log of its deliveries (models of the ``experiments`` app, imported by
``experiments.models``). Sending lives in ``experiments/services/webhooks.py``."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class WebhookEndpoint(models.Model):
    """Where an experiment's notifications go; the body of each is signed with HMAC-SHA256 under ``secret``."""

    experiment = models.OneToOneField("experiments.Experiment", on_delete=models.CASCADE, related_name="webhook")
    url = models.URLField(max_length=500)
    secret = models.CharField(max_length=128)
    updated_at = models.DateTimeField(auto_now=True)


class WebhookDelivery(models.Model):
    """One notification and how its delivery went (the audit page lists them)."""

    class State(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"

    experiment = models.ForeignKey("experiments.Experiment", on_delete=models.CASCADE, related_name="webhook_deliveries")
    event = models.CharField(max_length=32)
    # Set for events that happen once ("significant:<arm>"): a second one is not sent.
    once_key = models.CharField(max_length=200, blank=True, default="")
    url = models.URLField(max_length=500)
    payload = models.JSONField(default=dict)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.IntegerField(default=0)
    response_status = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["experiment", "once_key"], condition=~Q(once_key=""),
                                               name="webhookdelivery_once")]
