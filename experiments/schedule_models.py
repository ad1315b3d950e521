"""An experiment's schedule (a model of the ``experiments`` app, imported by ``experiments.models``): when beat
starts and stops it, and whether it stops itself once the evidence is in. Applied by
``experiments/services/schedules.py``."""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q


class ExperimentSchedule(models.Model):
    class AutoStop(models.TextChoices):
        OFF = "off"
        # The always-valid test (Holm across challengers) calls a challenger different from the control.
        DECIDED = "decided"
        # Every competing arm reached the planning calculator's sample size for (mde, alpha, power).
        PLANNED = "planned"

    experiment = models.OneToOneField("experiments.Experiment", on_delete=models.CASCADE, related_name="schedule")
    start_at = models.DateTimeField(null=True, blank=True)
    stop_at = models.DateTimeField(null=True, blank=True)
    auto_stop = models.CharField(max_length=16, choices=AutoStop.choices, default=AutoStop.OFF)
    planned_mde = models.FloatField(default=0.05)
    planned_alpha = models.FloatField(default=0.05)
    planned_power = models.FloatField(default=0.8)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(stop_at__isnull=True) | Q(start_at__isnull=True) | Q(stop_at__gt=F("start_at")),
                                   name="schedule_stop_after_start"),
            models.CheckConstraint(condition=Q(planned_mde__gt=0) & Q(planned_mde__lt=10), name="schedule_mde_range"),
            models.CheckConstraint(condition=Q(planned_alpha__gt=0) & Q(planned_alpha__lt=0.5),
                                   name="schedule_alpha_range"),
            models.CheckConstraint(condition=Q(planned_power__gte=0.5) & Q(planned_power__lt=1),
                                   name="schedule_power_range"),
        ]

    def __str__(self) -> str:
        return f"schedule of {self.experiment_id}"
