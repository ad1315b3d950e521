"""Mutually exclusive layers (models of the ``experiments`` app, imported by ``experiments.models``).

A layer hashes every user with its own salt into 10,000 buckets; each experiment in the layer owns one
contiguous range of them (a :class:`LayerAllocation`), and Postgres refuses two overlapping ranges in one
layer, so no user can be in two experiments of the same layer. Layers are orthogonal to each other (and to
the experiments' own assignment salts). Applied by ``experiments/services/layers.py``.
"""

from __future__ import annotations

from django.contrib.postgres.constraints import ExclusionConstraint
from django.contrib.postgres.fields import RangeOperators
from django.db import models
from django.db.models import F, Func, Q


class Layer(models.Model):
    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200, blank=True)
    salt = models.CharField(max_length=64)  # fixed at creation: changing it would reshuffle every user
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=~Q(salt=""), name="layer_salt_not_empty")]

    def __str__(self) -> str:
        return self.slug


class LayerAllocation(models.Model):
    """The layer buckets [start, end) that one experiment owns, for the experiment's whole life."""

    layer = models.ForeignKey(Layer, on_delete=models.PROTECT, related_name="allocations")
    experiment = models.OneToOneField("experiments.Experiment", on_delete=models.CASCADE,
                                      related_name="layer_allocation")
    start = models.IntegerField()
    end = models.IntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(start__gte=0) & Q(end__gt=F("start")) & Q(end__lte=10_000),
                                   name="layerallocation_range"),
            ExclusionConstraint(
                name="layerallocation_no_overlap",
                expressions=[(F("layer"), RangeOperators.EQUAL),
                             (Func(F("start"), F("end"), function="int4range"), RangeOperators.OVERLAPS)],
            ),
        ]
