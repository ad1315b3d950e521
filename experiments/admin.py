"""Operator views of every table, with the filters and searches used when something looks off.

The admin is a window, not a back door: nothing that decides who gets which arm, or
that the statistics and training are computed from, can be edited here. An arm's
weight, status, params and kind, an experiment's status, control, winner and
policy, assignments and the event log are read-only, because a change there would
skip the audit and open no allocation period, and SRM and the stratified
statistics would go silently wrong. Those changes go through the audited services:
the dashboard's buttons and the staff JSON API (docs/dashboard.md). What stays
editable is descriptive (an experiment's name), the catalogue and shop users, and
the staff API tokens.
"""

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.template.response import TemplateResponse

from experiments import business_models as bm
from experiments import models as m
from experiments.services.tokens import api_token_issue, api_tokens_revoke

AUDITED = "Change it through the dashboard or the staff JSON API (audited), not here."


class ViewOnly:
    """No add, change or delete: rows are written by the services (events, decisions, training, stats ticks)."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyAdmin(ViewOnly, admin.ModelAdmin):
    pass


class ArmInline(ViewOnly, admin.TabularInline):
    model = m.Arm
    extra = 0
    fields = ("name", "kind", "params", "weight", "status", "health", "health_reason")
    readonly_fields = fields
    show_change_link = True


@admin.register(m.ShopUser)
class ShopUserAdmin(admin.ModelAdmin):
    list_display = ("external_id", "created_at")
    search_fields = ("external_id",)
    date_hierarchy = "created_at"


@admin.register(m.Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ("external_id", "title", "category", "price", "active", "updated_at")
    list_filter = ("active", "category")
    search_fields = ("external_id", "title", "category")
    list_editable = ("active",)


@admin.register(m.Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "mode", "status", "control_arm", "winner", "policy", "allocation_epoch", "started_at")
    list_filter = ("mode", "status", "policy")
    search_fields = ("slug", "name")
    inlines = [ArmInline]
    # Only the name is descriptive; everything else changes traffic or the statistics (module doc).
    fields = ("slug", "name", "mode", "status", "control_arm", "winner", "salt", "allocation_epoch", "policy", "policy_floor",
              "policy_interval_minutes", "policy_next_at", "guardrails", "guardrail_alpha", "created_at", "started_at",
              "concluded_at")
    readonly_fields = tuple(f for f in fields if f != "name")

    def has_add_permission(self, request):
        return False  # experiments are created through the staff JSON API (POST /api/v1/experiments), audited

    def has_delete_permission(self, request, obj=None):
        # A draft never served anyone: deleting it loses nothing. Anything else is stopped or concluded instead.
        return obj is not None and obj.status == m.Experiment.Status.DRAFT and super().has_delete_permission(request, obj)


@admin.register(m.Arm)
class ArmAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "kind", "weight", "status", "health", "created_at")
    list_filter = ("status", "health", "kind", "experiment")
    search_fields = ("name", "kind", "experiment__slug")


@admin.register(m.Assignment)
class AssignmentAdmin(ReadOnlyAdmin):
    list_display = ("user", "experiment", "arm", "bucket", "assigned_at")
    list_filter = ("experiment", "arm")
    search_fields = ("user__external_id",)
    raw_id_fields = ("user",)


@admin.register(m.Impression)
class ImpressionAdmin(ReadOnlyAdmin):
    list_display = ("id", "served_at", "experiment", "arm", "user", "item", "position", "score", "propensity", "model_version")
    list_filter = ("experiment", "arm", "position")
    search_fields = ("request_id", "user__external_id", "item__external_id")
    raw_id_fields = ("user", "item")
    date_hierarchy = "served_at"
    # The log is append-only; counting it exactly on every page view would scan millions of rows.
    show_full_result_count = False


@admin.register(m.Click)
class ClickAdmin(ReadOnlyAdmin):
    list_display = ("id", "impression", "arm_id", "clicked_at", "late")
    list_filter = ("late",)
    search_fields = ("impression__request_id", "impression__user__external_id")
    raw_id_fields = ("impression",)
    date_hierarchy = "clicked_at"
    show_full_result_count = False


@admin.register(m.ModelCheckpoint)
class ModelCheckpointAdmin(ReadOnlyAdmin):
    list_display = ("arm", "version", "cursor", "click_cursor", "examples_seen", "created_at")
    list_filter = ("arm__experiment", "arm")
    search_fields = ("arm__name",)
    exclude = ("state",)
    readonly_fields = ("arm", "version", "metrics", "cursor", "click_cursor", "examples_seen", "created_at")


@admin.register(m.Decision)
class DecisionAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "experiment", "action", "arm", "user", "reason")
    list_filter = ("action", "experiment")
    search_fields = ("reason", "user__username", "arm__name")
    readonly_fields = [f.name for f in m.Decision._meta.fields]


@admin.register(m.ArmUserStat)
class ArmUserStatAdmin(ReadOnlyAdmin):
    list_display = ("arm", "user", "epoch", "impressions", "clicks")
    list_filter = ("arm__experiment", "arm", "epoch")
    raw_id_fields = ("user",)


@admin.register(m.StatsSnapshot)
class StatsSnapshotAdmin(ReadOnlyAdmin):
    list_display = ("experiment", "computed_at")
    list_filter = ("experiment",)
    date_hierarchy = "computed_at"


@admin.register(m.InterleaveCredit)
class InterleaveCreditAdmin(ReadOnlyAdmin):
    list_display = ("first_clicked_at", "experiment", "request_id", "arm", "clicks")
    list_filter = ("experiment",)
    search_fields = ("request_id",)


@admin.register(m.OfflineEstimate)
class OfflineEstimateAdmin(ReadOnlyAdmin):
    list_display = ("computed_at", "experiment", "arm_name", "kind", "model_version", "estimator", "value", "ci_low", "ci_high", "rows")
    list_filter = ("experiment", "estimator", "kind")
    search_fields = ("arm_name", "kind")
    readonly_fields = [f.name for f in m.OfflineEstimate._meta.fields]


@admin.register(m.WebhookEndpoint)
class WebhookEndpointAdmin(ReadOnlyAdmin):
    """Read-only: a webhook is set on the dashboard or through the API, where the change is audited."""

    list_display = ("experiment", "url", "updated_at")
    search_fields = ("url",)
    readonly_fields = ("experiment", "url", "updated_at")
    exclude = ("secret",)


@admin.register(m.WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "experiment", "event", "state", "attempts", "response_status")
    list_filter = ("experiment", "event", "state")
    search_fields = ("event", "url")
    readonly_fields = [f.name for f in m.WebhookDelivery._meta.fields]


@admin.register(m.AllocationEpoch)
class AllocationEpochAdmin(ReadOnlyAdmin):
    list_display = ("experiment", "epoch", "started_at", "weights", "decision")
    list_filter = ("experiment",)
    readonly_fields = [f.name for f in m.AllocationEpoch._meta.fields]


@admin.register(m.ArmEpochSums)
class ArmEpochSumsAdmin(ReadOnlyAdmin):
    list_display = [f.name for f in m.ArmEpochSums._meta.fields][:8]
    list_filter = ("arm__experiment",)
    readonly_fields = [f.name for f in m.ArmEpochSums._meta.fields]


@admin.register(m.ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Staff bearer tokens for the operator API: made here (the token is shown once), revoked here."""

    list_display = ("name", "user", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "user__username", "prefix")
    actions = ["revoke"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("user", "name", "expires_at")
        return ("user", "name", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at")

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return ("user", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at")

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "user":
            kwargs["queryset"] = get_user_model().objects.filter(is_staff=True, is_active=True)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        if change:
            obj.save(update_fields=["name"])
            return
        token, raw = api_token_issue(user=obj.user, name=obj.name, expires_at=obj.expires_at)
        obj.pk, obj.prefix, obj.key_hash, obj.created_at = token.pk, token.prefix, token.key_hash, token.created_at
        obj._state.adding, obj._state.db = False, token._state.db
        obj.plaintext = raw

    def response_add(self, request, obj, post_url_continue=None):
        # Shown on this page only, never stored and never put in a message cookie.
        context = {**self.admin_site.each_context(request), "title": "API token made", "token": obj,
                   "plaintext": obj.plaintext, "opts": self.model._meta}
        return TemplateResponse(request, "admin/experiments/apitoken/issued.html", context)

    def has_delete_permission(self, request, obj=None):
        return False  # revoke instead: the row stays as the record of who had access

    @admin.action(description="Revoke the selected tokens now")
    def revoke(self, request, queryset):
        n = api_tokens_revoke(tokens=queryset)
        self.message_user(request, f"Revoked {n} token(s).", messages.SUCCESS)


@admin.register(m.ExperimentSchedule)
class ExperimentScheduleAdmin(ReadOnlyAdmin):
    """Read-only: a schedule is set on the dashboard's schedule page, where the change is audited."""

    list_display = ("experiment", "start_at", "stop_at", "auto_stop", "updated_at")
    list_filter = ("auto_stop",)
    search_fields = ("experiment__slug",)


@admin.register(m.GuardrailBounds)
class GuardrailBoundsAdmin(ReadOnlyAdmin):
    """Read-only: the bounds are set on the dashboard's policy page, where the change is audited."""

    list_display = ("experiment", "latency_p95_ms", "error_rate", "min_coverage", "min_requests", "updated_at")
    search_fields = ("experiment__slug",)


@admin.register(m.Layer)
class LayerAdmin(ReadOnlyAdmin):
    """Read-only: layers are made on the dashboard's Layers page or through POST /api/v1/layers."""

    list_display = ("slug", "name", "created_at")
    search_fields = ("slug", "name")


@admin.register(m.LayerAllocation)
class LayerAllocationAdmin(ReadOnlyAdmin):
    list_display = ("layer", "experiment", "start", "end", "created_at")
    list_filter = ("layer",)
    search_fields = ("experiment__slug", "layer__slug")


@admin.register(m.ShadowRanking)
class ShadowRankingAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "experiment", "arm", "served_arm", "request_id", "model_version")
    list_filter = ("experiment",)
    search_fields = ("request_id",)
    list_select_related = ("experiment", "arm", "served_arm")


@admin.register(m.BusinessEvent)
class BusinessEventAdmin(ReadOnlyAdmin):
    """Read-only: events come through POST /api/v1/events and import_events, with their rollup."""

    list_display = ("id", "ts", "type", "user", "item", "value", "event_id")
    list_filter = ("type",)
    search_fields = ("event_id", "user__external_id", "item__external_id")
    raw_id_fields = ("user", "item", "impression")
    date_hierarchy = "ts"
    show_full_result_count = False


@admin.register(m.EventAttribution)
class EventAttributionAdmin(ReadOnlyAdmin):
    list_display = ("event", "experiment", "arm", "epoch", "late")
    list_filter = ("experiment", "late")
    search_fields = ("event__event_id",)
    raw_id_fields = ("event", "impression")
    show_full_result_count = False


@admin.register(bm.ArmEpochOutcomeSums)
class ArmEpochOutcomeSumsAdmin(ReadOnlyAdmin):
    list_display = ("arm", "epoch", "purchasers", "purchases", "revenue", "revenue_sq")
    list_filter = ("arm__experiment",)
    readonly_fields = [f.name for f in bm.ArmEpochOutcomeSums._meta.fields]


@admin.register(bm.ArmEpochCupedSums)
class ArmEpochCupedSumsAdmin(ReadOnlyAdmin):
    list_display = ("arm", "epoch", "users", "sum_n0", "sum_c0", "sum_nn0", "sum_cc0")
    list_filter = ("arm__experiment",)
    readonly_fields = [f.name for f in bm.ArmEpochCupedSums._meta.fields]


@admin.register(bm.UserCovariate)
class UserCovariateAdmin(ReadOnlyAdmin):
    list_display = ("experiment", "user", "first_exposure_at", "pre_impressions", "pre_clicks", "recorded_at")
    list_filter = ("experiment",)
    raw_id_fields = ("user",)


@admin.register(m.ArmUserOutcome)
class ArmUserOutcomeAdmin(ReadOnlyAdmin):
    list_display = ("arm", "user", "epoch", "views", "carts", "purchases", "revenue")
    list_filter = ("arm__experiment", "arm", "epoch")
    raw_id_fields = ("user",)
