"""The data model: shop users, the catalogue, experiments and arms, and the event log.

Every invariant that a row can break on its own is a database constraint, so a bug in any
writer (API, import, admin, a migration) is refused by Postgres. No business logic here.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import F, Q


class ShopUser(models.Model):
    """A shopper of the client shop, known by the shop's own id."""

    external_id = models.CharField(max_length=255, unique=True)
    attributes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # The current session, Item ids most recent first (see experiments.services.sessions).
    session_clicked = ArrayField(models.BigIntegerField(), default=list, db_default=[], blank=True)
    session_impressed = ArrayField(models.BigIntegerField(), default=list, db_default=[], blank=True)
    session_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=~Q(external_id=""), name="shopuser_external_id_not_empty")]

    def __str__(self) -> str:
        return self.external_id


class Item(models.Model):
    external_id = models.CharField(max_length=255, unique=True)
    title = models.CharField(max_length=500, blank=True)
    category = models.CharField(max_length=100, blank=True, db_index=True)
    price = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    features = models.JSONField(default=dict, blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~Q(external_id=""), name="item_external_id_not_empty"),
            models.CheckConstraint(condition=Q(price__isnull=True) | Q(price__gte=0), name="item_price_non_negative"),
        ]
        indexes = [models.Index(fields=["active", "id"], name="item_active_id")]

    def __str__(self) -> str:
        return f"{self.external_id} {self.title}".strip()


class Experiment(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft"
        RUNNING = "running"
        STOPPED = "stopped"  # out of the race without a winner: serves its control arm to everyone
        CONCLUDED = "concluded"

    class Mode(models.TextChoices):
        AB = "ab"  # each user sees one arm (sticky assignment)
        INTERLEAVED = "interleaved"  # every slate team-drafts all serving arms (services/interleaved.py)

    class Policy(models.TextChoices):
        FIXED = "fixed"
        THOMPSON = "thompson"
        TOP_TWO_THOMPSON = "top_two_thompson"

    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200, blank=True)
    salt = models.CharField(max_length=64)  # fixed when the experiment is made: a new salt reshuffles every user
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.AB, db_default=Mode.AB)  # fixed at creation
    control_arm = models.ForeignKey("Arm", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    winner = models.ForeignKey("Arm", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # Bumped whenever traffic weights change, so statistics can stratify by allocation period.
    allocation_epoch = models.IntegerField(default=0)
    concluded_at = models.DateTimeField(null=True, blank=True)
    conclusion = models.TextField(blank=True, default="")  # written by services.lifecycle.experiment_conclude
    # Feedback control (opt-in, services/allocation.py): re-weights the arms; each keeps ``policy_floor`` at least.
    policy = models.CharField(max_length=32, choices=Policy.choices, default=Policy.FIXED)
    policy_floor = models.FloatField(default=0.1)
    policy_interval_minutes = models.IntegerField(default=10)
    policy_next_at = models.DateTimeField(null=True, blank=True)
    # Guardrails (experiments/services/guardrails.py): pause a harmful or diverging arm, roll back a collapsed model.
    guardrails = models.BooleanField(default=True)
    guardrail_alpha = models.FloatField(default=0.01)
    # Holdout (services/holdouts.py): a share of users stays on a baseline arm for good (set before the start).
    holdout_arm = models.ForeignKey("Arm", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    holdout_share = models.FloatField(default=0.0, db_default=0.0)
    holdout_ended_at = models.DateTimeField(null=True, blank=True)
    # The metric that drives promotion evidence, the allocation policy and the guardrail (business_models.METRICS).
    primary_metric = models.CharField(max_length=32, choices=[("ctr", "CTR"), ("conversion_rate", "Conversion rate"), (
        "revenue_per_user", "Revenue per user")], default="ctr", db_default="ctr")

    class Meta:
        permissions = [("promote_arm", "Can promote, roll back, pause and re-weight arms")]
        constraints = [
            models.CheckConstraint(condition=~Q(salt=""), name="experiment_salt_not_empty"),
            models.CheckConstraint(condition=Q(mode__in=["ab", "interleaved"]), name="experiment_mode_known"),
            models.CheckConstraint(condition=Q(policy_floor__gte=0) & Q(policy_floor__lte=0.5),
                                   name="experiment_policy_floor_range"),
            models.CheckConstraint(
                condition=Q(policy_interval_minutes__gte=1) & Q(policy_interval_minutes__lte=1440),
                name="experiment_policy_interval_range",
            ),
            models.CheckConstraint(condition=Q(guardrail_alpha__gt=0) & Q(guardrail_alpha__lt=0.5),
                                   name="experiment_guardrail_alpha_range"),
            models.CheckConstraint(
                condition=Q(status="concluded", winner__isnull=False) | ~Q(status="concluded"),
                name="experiment_concluded_has_winner",
            ),
            models.CheckConstraint(
                condition=Q(holdout_share__gte=0) & Q(holdout_share__lte=0.5), name="experiment_holdout_share_range"
            ),
            models.CheckConstraint(condition=Q(primary_metric__in=["ctr", "conversion_rate", "revenue_per_user"]),
                                   name="experiment_primary_metric_known"),
        ]

    @property
    def holdout_running(self) -> bool:  # a promotion keeps it; only an operator ends it
        return self.holdout_arm_id is not None and self.holdout_share > 0 and self.holdout_ended_at is None

    def __str__(self) -> str:
        return self.slug


class Arm(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        PAUSED = "paused"
        RETIRED = "retired"
        SHADOW = "shadow"  # ranks every request without being shown; learns off-policy (services/shadow.py)

    class Health(models.TextChoices):
        HEALTHY = "healthy"
        UNHEALTHY = "unhealthy"

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="arms")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=50)
    params = models.JSONField(default=dict, blank=True)
    weight = models.FloatField(default=1.0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    health = models.CharField(max_length=16, choices=Health.choices, default=Health.HEALTHY)
    health_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["experiment", "name"], name="arm_unique_name_per_experiment"),
            models.CheckConstraint(condition=Q(weight__gte=0), name="arm_weight_non_negative"),
            models.CheckConstraint(condition=~Q(name=""), name="arm_name_not_empty"),
            models.CheckConstraint(condition=~Q(kind=""), name="arm_kind_not_empty"),
        ]

    def __str__(self) -> str:
        return f"{self.experiment.slug}/{self.name}"


class Assignment(models.Model):
    """The sticky user → arm mapping of one experiment: the truth for a returning user (docs/serving.md).

    Written on a user's first request, and again only when the arm stops serving (paused or
    retired): the user then moves to an arm drawn by a second hash. One row per user and experiment.
    """

    # No index of its own: the unique (user, experiment) constraint leads with it.
    user = models.ForeignKey(ShopUser, on_delete=models.CASCADE, related_name="assignments", db_index=False)
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="assignments")
    arm = models.ForeignKey(Arm, on_delete=models.CASCADE, related_name="assignments")
    bucket = models.IntegerField()
    assigned_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "experiment"], name="assignment_unique_user_experiment"),
            models.CheckConstraint(condition=Q(bucket__gte=0) & Q(bucket__lt=10_000), name="assignment_bucket_range"),
        ]


class Impression(models.Model):
    """One shown item of one recommendation response."""

    request_id = models.UUIDField(default=uuid.uuid4)
    # No single-column index on user, experiment or arm: the composite indexes below serve those (each costs writes).
    user = models.ForeignKey(ShopUser, on_delete=models.CASCADE, related_name="impressions", db_index=False)
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="impressions")
    # Denormalised from the arm so that stats queries filter without a join.
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="impressions", db_index=False)
    arm = models.ForeignKey(Arm, on_delete=models.CASCADE, related_name="impressions", db_index=False)
    position = models.IntegerField()
    score = models.FloatField()
    propensity = models.FloatField()
    model_version = models.IntegerField(default=0)
    served_at = models.DateTimeField()
    # The session the arm ranked with (null for arms that ignore it): training learns on the served state.
    hist_clicked = ArrayField(models.BigIntegerField(), null=True, blank=True)
    hist_impressed = ArrayField(models.BigIntegerField(), null=True, blank=True)
    # The experiment's allocation_epoch when served: a click counts in the rollup of its impression's period.
    epoch = models.IntegerField(default=0, db_default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["request_id", "position", "served_at"], name="impression_unique_request_position"),
            models.CheckConstraint(condition=Q(position__gte=1), name="impression_position_positive"),
            models.CheckConstraint(
                condition=Q(propensity__gt=0) & Q(propensity__lte=1), name="impression_propensity_range"
            ),
            models.CheckConstraint(condition=Q(model_version__gte=0), name="impression_model_version_non_negative"),
        ]
        indexes = [
            # The training cursor walks an arm's impressions by id.
            models.Index(fields=["arm", "id"], name="impression_arm_id"),
            models.Index(fields=["experiment", "served_at"], name="impression_experiment_served"),
            models.Index(fields=["user", "served_at"], name="impression_user_served"),
        ]


class Click(models.Model):
    """At most one click per impression; a late click is kept but not counted."""

    # Its own increasing id lets training keep a cursor over clicks that arrive after their impression was trained on.
    # No database FK: impressions are partitioned by day (migration 0011, services/partitions.py).
    impression = models.OneToOneField(Impression, on_delete=models.CASCADE, related_name="click", db_constraint=False)
    clicked_at = models.DateTimeField()
    late = models.BooleanField(default=False)
    # The impression's arm, time and training columns, copied when the click is written (an impression never
    # changes): a training step reads a page of one arm's clicks from one index range instead of joining the
    # arm's whole impression log (services/training_data.py). ORM writers use ``Click.of``.
    arm_id = models.BigIntegerField()
    served_at = models.DateTimeField()
    user_id = models.BigIntegerField()
    item_id = models.BigIntegerField()
    position = models.IntegerField()
    hist_clicked = ArrayField(models.BigIntegerField(), null=True, blank=True)
    hist_impressed = ArrayField(models.BigIntegerField(), null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["clicked_at"], name="click_clicked_at"),
            # The training cursor walks an arm's clicks by id.
            models.Index(fields=["arm_id", "id"], name="click_arm_id"),
        ]

    @classmethod
    def of(cls, impression: Impression, **fields: Any) -> Click:
        """A click on ``impression`` carrying its copied columns (SQL writers copy them in their statement)."""
        return cls(impression=impression, arm_id=impression.arm_id, served_at=impression.served_at,
                   user_id=impression.user_id, item_id=impression.item_id, position=impression.position,
                   hist_clicked=impression.hist_clicked, hist_impressed=impression.hist_impressed, **fields)


class ModelCheckpoint(models.Model):
    """A version of an arm's state (a full snapshot or a delta), with the cursors of the training data it has seen."""

    arm = models.ForeignKey(Arm, on_delete=models.CASCADE, related_name="checkpoints")
    version = models.IntegerField()
    state = models.BinaryField()
    metrics = models.JSONField(default=dict, blank=True)
    cursor = models.BigIntegerField(default=0)  # id of the last impression this version was trained on (0 = none)
    click_cursor = models.BigIntegerField(default=0)  # id of the last click folded in (delayed feedback)
    examples_seen = models.BigIntegerField(default=0)
    snapshot_version = models.IntegerField(null=True, blank=True)  # null: a snapshot; else the chain's (deltas)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["arm", "version"], name="checkpoint_unique_arm_version"),
            models.CheckConstraint(condition=Q(snapshot_version__lt=F("version")), name="checkpoint_snapshot_first"),
            models.CheckConstraint(condition=Q(version__gte=1), name="checkpoint_version_positive"),
            models.CheckConstraint(condition=Q(cursor__gte=0), name="checkpoint_cursor_non_negative"),
            models.CheckConstraint(condition=Q(click_cursor__gte=0), name="checkpoint_click_cursor_non_negative"),
        ]
        indexes = [models.Index(fields=["arm", "-version"], name="checkpoint_arm_version_desc")]


class Decision(models.Model):
    """The audit log: every change of traffic or of a served model, with the evidence at that moment."""

    class Action(models.TextChoices):
        PROMOTE = "promote"
        ROLLBACK = "rollback"
        PAUSE = "pause"
        RESUME = "resume"
        REWEIGHT = "reweight"
        CHECKPOINT_ROLLBACK = "checkpoint_rollback"
        CREATE = "create"
        ARM_ADD = "arm_add"
        START = "start"
        STOP = "stop"
        PARAMS = "params"
        POLICY = "policy"
        CONCLUDE = "conclude"
        WEBHOOK = "webhook"
        SCHEDULE = "schedule"
        HOLDOUT = "holdout"
        HOLDOUT_END = "holdout_end"
        SHADOW = "shadow"
        # Made by the system (user null): the allocation policy and the guardrails (and a schedule's start and stop).
        REALLOCATE = "reallocate"
        GUARDRAIL_PAUSE = "guardrail_pause"
        GUARDRAIL_ROLLBACK = "guardrail_rollback"

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="decisions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    action = models.CharField(max_length=32, choices=Action.choices)
    arm = models.ForeignKey(Arm, null=True, blank=True, on_delete=models.SET_NULL, related_name="decisions")
    reason = models.TextField(blank=True)
    stats_snapshot = models.JSONField(default=dict, blank=True)
    # What the decision replaced (weights, statuses, winner), so that a rollback can restore it.
    previous_state = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["experiment", "-created_at"], name="decision_experiment_created")]


class ArmUserStat(models.Model):
    """Per-user counts of one arm in one allocation period: the clustered-statistics rollup.

    Kept up to date in the same transaction as the impressions and clicks it counts,
    so the dashboard never scans the impression log.
    """

    arm = models.ForeignKey(Arm, on_delete=models.CASCADE, related_name="user_stats")
    user = models.ForeignKey(ShopUser, on_delete=models.CASCADE, related_name="+")
    epoch = models.IntegerField(default=0)
    impressions = models.IntegerField(default=0)
    clicks = models.IntegerField(default=0)
    # The counts already added into ArmEpochSums by the stats tick (which alone writes these);
    # a row whose counts differ is folded in by the next tick.
    folded_impressions = models.IntegerField(default=0, db_default=0)
    folded_clicks = models.IntegerField(default=0, db_default=0)

    class Meta:
        indexes = [
            models.Index(
                fields=["arm"],
                name="armuserstat_unfolded",
                condition=~Q(impressions=models.F("folded_impressions")) | ~Q(clicks=models.F("folded_clicks")),
            ),
        ]
        constraints = [
            models.UniqueConstraint(fields=["arm", "user", "epoch"], name="armuserstat_unique"),
            # 0 <= clicks <= impressions, which also keeps impressions non-negative.
            models.CheckConstraint(
                condition=Q(clicks__gte=0) & Q(clicks__lte=models.F("impressions")),
                name="armuserstat_clicks_within_impressions",
            ),
        ]


class StatsSnapshot(models.Model):
    """One stats tick of an experiment, kept for the charts' time axis."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="snapshots")
    computed_at = models.DateTimeField(db_index=True)
    payload = models.JSONField(default=dict)

    class Meta:
        indexes = [models.Index(fields=["experiment", "computed_at"], name="snapshot_experiment_time")]


from experiments.api_tokens import ApiToken  # noqa: E402,F401  (split by sub-domain, registered from here)
from experiments.business_models import ArmUserOutcome, BusinessEvent, EventAttribution  # noqa: E402,F401
from experiments.guardrail_models import GuardrailBounds  # noqa: E402,F401
from experiments.interleaving_models import InterleaveCredit  # noqa: E402,F401
from experiments.layer_models import Layer, LayerAllocation  # noqa: E402,F401
from experiments.offline_models import OfflineEstimate  # noqa: E402,F401
from experiments.period_models import AllocationEpoch, ArmEpochSums  # noqa: E402,F401
from experiments.schedule_models import ExperimentSchedule  # noqa: E402,F401
from experiments.shadow_models import ShadowRanking  # noqa: E402,F401  (each module is one sub-domain's models)
from experiments.webhook_models import WebhookDelivery, WebhookEndpoint  # noqa: E402,F401
