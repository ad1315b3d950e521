"""Business events beside clicks (issue 18): add-to-cart, purchase, view; their attribution; the per-user rollup.

* :class:`BusinessEvent` — one row per event a client posted (``POST /api/v1/events``) or imported, idempotent on
  ``event_id``. Money is ``numeric(12, 2)``: exact cents, never a float.
* :class:`EventAttribution` — which arm of which experiment the event counts for, and whether it arrived inside the
  attribution window (``late`` rows are kept, not counted). Zero rows: the user was served by no running A/B
  experiment within the window. One row per experiment (a user may be in several).
* :class:`ArmUserOutcome` — the additive per-(arm, user, epoch) rollup, a sibling of
  :class:`~experiments.models.ArmUserStat` with the same key: written in the transaction of the event, so
  conversion rate (users with ``purchases > 0`` / users of ArmUserStat) and revenue per user come from
  rollups, never from a scan of events. Only counted (not late) attributions add to it.

The rule itself is in :mod:`experiments.services.business_events`; no logic here.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

EVENT_TYPES = ("view", "add_to_cart", "purchase")


class BusinessEvent(models.Model):
    class Type(models.TextChoices):
        VIEW = "view"
        ADD_TO_CART = "add_to_cart"
        PURCHASE = "purchase"

    user = models.ForeignKey("experiments.ShopUser", on_delete=models.CASCADE, related_name="+", db_index=False)
    type = models.CharField(max_length=16, choices=Type.choices)
    item = models.ForeignKey("experiments.Item", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    value = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    # The impression the client named (null: attributed by the user's latest serve). No database FK: impressions
    # are partitioned by day and dropped with their partition.
    impression = models.ForeignKey("experiments.Impression", null=True, blank=True, on_delete=models.DO_NOTHING,
                                   db_constraint=False, db_index=False, related_name="+")
    event_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    ts = models.DateTimeField()
    received_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(type__in=EVENT_TYPES), name="businessevent_type_known"),
            models.CheckConstraint(condition=Q(value__isnull=True) | Q(value__gte=0),
                                   name="businessevent_value_non_negative"),
            models.CheckConstraint(condition=Q(event_id__isnull=True) | ~Q(event_id=""),
                                   name="businessevent_event_id_not_empty"),
        ]
        indexes = [models.Index(fields=["user", "ts"], name="businessevent_user_ts")]


class EventAttribution(models.Model):
    event = models.ForeignKey(BusinessEvent, on_delete=models.CASCADE, related_name="attributions", db_index=False)
    experiment = models.ForeignKey("experiments.Experiment", on_delete=models.CASCADE, related_name="+")
    arm = models.ForeignKey("experiments.Arm", on_delete=models.CASCADE, related_name="+")
    epoch = models.IntegerField()
    # The impression that attributes the event (the named one, or the user's latest within the window).
    impression = models.ForeignKey("experiments.Impression", on_delete=models.DO_NOTHING, db_constraint=False,
                                   db_index=False, related_name="+")
    late = models.BooleanField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["event", "experiment"], name="eventattribution_unique"),
            models.CheckConstraint(condition=Q(epoch__gte=0), name="eventattribution_epoch_non_negative"),
        ]
        indexes = [models.Index(fields=["arm", "epoch"], name="eventattribution_arm_epoch")]


class ArmUserOutcome(models.Model):
    """Counted business events of one user on one arm in one allocation period (key of ArmUserStat)."""

    arm = models.ForeignKey("experiments.Arm", on_delete=models.CASCADE, related_name="user_outcomes")
    user = models.ForeignKey("experiments.ShopUser", on_delete=models.CASCADE, related_name="+")
    epoch = models.IntegerField(default=0)
    views = models.IntegerField(default=0)
    carts = models.IntegerField(default=0)
    purchases = models.IntegerField(default=0)
    revenue = models.DecimalField(max_digits=14, decimal_places=2, default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["arm", "user", "epoch"], name="armuseroutcome_unique"),
            models.CheckConstraint(
                condition=Q(views__gte=0) & Q(carts__gte=0) & Q(purchases__gte=0) & Q(revenue__gte=0),
                name="armuseroutcome_counts_non_negative",
            ),
            # Revenue comes from purchases only.
            models.CheckConstraint(condition=Q(purchases__gt=0) | Q(revenue=0),
                                   name="armuseroutcome_revenue_needs_purchase"),
        ]
