"""Business events beside clicks (issue 18): add-to-cart, purchase, view; their attribution; the per-user rollup.

* :class:`BusinessEvent` — one row per event a client posted (``POST /api/v1/events``) or imported, idempotent on
  ``event_id``. Money is ``numeric(12, 2)``: exact cents, never a float.
* :class:`EventAttribution` — which arm of which experiment the event counts for, and whether it arrived inside the
  attribution window (``late`` rows are kept, not counted). Zero rows: the user was served by no running A/B
  experiment within the window. One row per experiment (a user may be in several).
* :class:`ArmEpochOutcomeSums` — the running sums of the outcome rollup per (arm, epoch) that each stats tick folds
  from the rows changed since the last (``services.metric_fold``), the inputs of conversion rate and revenue per
  user (``stats.metrics``); :class:`ArmEpochCupedSums` the same for CUPED's covariate sums (``stats.cuped``), from
  :class:`UserCovariate`, each user's pre-exposure history recorded once per experiment.
* ``Experiment.primary_metric`` (in experiments/models.py) — one of :data:`METRICS`: the metric that drives
  promotion evidence, the allocation policy and the guardrail (docs/statistics.md §19).
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
    # What the stats tick has added into ArmEpochOutcomeSums (which it alone writes), as ArmUserStat's folded_*.
    folded_purchases = models.IntegerField(default=0, db_default=0)
    folded_revenue = models.DecimalField(max_digits=14, decimal_places=2, default=0, db_default=0)

    class Meta:
        indexes = [
            models.Index(
                fields=["arm"],
                name="armuseroutcome_unfolded",
                condition=~Q(purchases=models.F("folded_purchases")) | ~Q(revenue=models.F("folded_revenue")),
            ),
        ]
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


METRICS = ("ctr", "conversion_rate", "revenue_per_user")
METRIC_CHOICES = [("ctr", "CTR"), ("conversion_rate", "Conversion rate"), ("revenue_per_user", "Revenue per user")]



class ArmEpochOutcomeSums(models.Model):
    """Running sums of the outcome rollup of one arm in one period; the users are ArmEpochSums' ``n_users``.

    ``purchasers``: users with a purchase (Σ of the 0/1 indicator, which is also its Σ of squares); ``revenue`` and
    ``revenue_sq``: Σ and Σ² of the users' revenue. With n_u = 1 these and the users are a per-user mean's sums.
    """

    arm = models.ForeignKey("experiments.Arm", on_delete=models.CASCADE, related_name="outcome_sums")
    epoch = models.IntegerField()
    purchasers = models.BigIntegerField(default=0)
    purchases = models.BigIntegerField(default=0)
    revenue = models.DecimalField(max_digits=20, decimal_places=2, default=0)
    revenue_sq = models.DecimalField(max_digits=32, decimal_places=4, default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["arm", "epoch"], name="armepochoutcomesums_unique")]


class UserCovariate(models.Model):
    """A user's behaviour before their first exposure to an experiment (CUPED's covariate), recorded once.

    The stats tick records it when it first folds the user (``services.metric_fold.covariates_record``), by the
    rule of the per-user export (``selectors.exports``): impressions served before the first exposure, and their
    clicks that were not late and came before it.
    """

    experiment = models.ForeignKey("experiments.Experiment", on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey("experiments.ShopUser", on_delete=models.CASCADE, related_name="+")
    first_exposure_at = models.DateTimeField(null=True, blank=True)
    pre_impressions = models.IntegerField(default=0)
    pre_clicks = models.IntegerField(default=0)
    recorded_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["experiment", "user"], name="usercovariate_unique"),
            models.CheckConstraint(condition=Q(pre_clicks__gte=0) & Q(pre_clicks__lte=models.F("pre_impressions")),
                                   name="usercovariate_clicks_within_impressions"),
        ]


class ArmEpochCupedSums(models.Model):
    """CUPED's covariate sums of one arm in one period (``stats.cuped.CupedSums`` less the six of ArmEpochSums).

    ``users``: the users whose covariate is in the sums; CUPED is shown only where it equals ArmEpochSums'
    ``n_users`` (rows folded before these sums existed have none). n, c: the user's impressions and clicks in the
    period; n0, c0: their covariate.
    """

    arm = models.ForeignKey("experiments.Arm", on_delete=models.CASCADE, related_name="cuped_sums")
    epoch = models.IntegerField()
    users = models.BigIntegerField(default=0)
    sum_n0 = models.BigIntegerField(default=0)
    sum_c0 = models.BigIntegerField(default=0)
    sum_n0n0 = models.BigIntegerField(default=0)
    sum_c0c0 = models.BigIntegerField(default=0)
    sum_n0c0 = models.BigIntegerField(default=0)
    sum_nn0 = models.BigIntegerField(default=0)
    sum_nc0 = models.BigIntegerField(default=0)
    sum_cn0 = models.BigIntegerField(default=0)
    sum_cc0 = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["arm", "epoch"], name="armepochcupedsums_unique")]
