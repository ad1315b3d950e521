"""An experiment's guardrail bounds on serving (a model of the ``experiments`` app, imported by
``experiments.models``): latency p95, error rate and catalogue coverage per arm. Judged by
``experiments/services/guardrails.py`` with the rules of ``experiments/stats/serving_health.py``; an experiment
without a row has the defaults of :class:`experiments.stats.serving_health.Bounds`."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class GuardrailBounds(models.Model):
    experiment = models.OneToOneField("experiments.Experiment", on_delete=models.CASCADE,
                                      related_name="guardrail_bounds")
    latency_p95_ms = models.FloatField(null=True, blank=True)  # null: not judged
    error_rate = models.FloatField(null=True, blank=True, default=0.05)
    min_coverage = models.FloatField(null=True, blank=True)
    min_requests = models.IntegerField(default=200)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "guardrail bounds"
        constraints = [
            models.CheckConstraint(condition=Q(latency_p95_ms__isnull=True) | Q(latency_p95_ms__gt=0),
                                   name="guardrail_latency_positive"),
            models.CheckConstraint(condition=Q(error_rate__isnull=True) | (Q(error_rate__gt=0) & Q(error_rate__lt=1)),
                                   name="guardrail_error_rate_range"),
            models.CheckConstraint(condition=Q(min_coverage__isnull=True) | (Q(min_coverage__gt=0) & Q(
                min_coverage__lte=1)), name="guardrail_min_coverage_range"),
            models.CheckConstraint(condition=Q(min_requests__gte=1), name="guardrail_min_requests_positive"),
        ]

    def __str__(self) -> str:
        return f"guardrail bounds of {self.experiment_id}"
