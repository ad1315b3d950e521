"""Operator views of every table, with the filters and searches used when something looks off."""

from django.contrib import admin

from experiments import models as m


class ArmInline(admin.TabularInline):
    model = m.Arm
    extra = 0
    fields = ("name", "kind", "params", "weight", "status", "health", "health_reason")
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
    list_display = ("slug", "name", "status", "control_arm", "winner", "allocation_epoch", "started_at")
    list_filter = ("status",)
    search_fields = ("slug", "name")
    inlines = [ArmInline]
    # Traffic changes go through the audited promote/rollback actions, not a form field.
    readonly_fields = ("salt", "winner", "allocation_epoch", "created_at")


@admin.register(m.Arm)
class ArmAdmin(admin.ModelAdmin):
    list_display = ("__str__", "kind", "weight", "status", "health", "created_at")
    list_filter = ("status", "health", "kind", "experiment")
    search_fields = ("name", "kind", "experiment__slug")


@admin.register(m.Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ("user", "experiment", "arm", "bucket", "assigned_at")
    list_filter = ("experiment", "arm")
    search_fields = ("user__external_id",)
    raw_id_fields = ("user",)


@admin.register(m.Impression)
class ImpressionAdmin(admin.ModelAdmin):
    list_display = ("id", "served_at", "experiment", "arm", "user", "item", "position", "score", "propensity", "model_version")
    list_filter = ("experiment", "arm", "position")
    search_fields = ("request_id", "user__external_id", "item__external_id")
    raw_id_fields = ("user", "item")
    date_hierarchy = "served_at"
    # The log is append-only; counting it exactly on every page view would scan millions of rows.
    show_full_result_count = False


@admin.register(m.Click)
class ClickAdmin(admin.ModelAdmin):
    list_display = ("id", "impression", "clicked_at", "late")
    list_filter = ("late",)
    search_fields = ("impression__request_id", "impression__user__external_id")
    raw_id_fields = ("impression",)
    date_hierarchy = "clicked_at"
    show_full_result_count = False


@admin.register(m.ModelCheckpoint)
class ModelCheckpointAdmin(admin.ModelAdmin):
    list_display = ("arm", "version", "cursor", "click_cursor", "examples_seen", "created_at")
    list_filter = ("arm__experiment", "arm")
    search_fields = ("arm__name",)
    exclude = ("state",)
    readonly_fields = ("arm", "version", "metrics", "cursor", "click_cursor", "examples_seen", "created_at")


@admin.register(m.Decision)
class DecisionAdmin(admin.ModelAdmin):
    list_display = ("created_at", "experiment", "action", "arm", "user", "reason")
    list_filter = ("action", "experiment")
    search_fields = ("reason", "user__username", "arm__name")
    readonly_fields = [f.name for f in m.Decision._meta.fields]

    def has_change_permission(self, request, obj=None):
        return False  # an audit log is not edited

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(m.ArmUserStat)
class ArmUserStatAdmin(admin.ModelAdmin):
    list_display = ("arm", "user", "epoch", "impressions", "clicks")
    list_filter = ("arm__experiment", "arm", "epoch")
    raw_id_fields = ("user",)


@admin.register(m.StatsSnapshot)
class StatsSnapshotAdmin(admin.ModelAdmin):
    list_display = ("experiment", "computed_at")
    list_filter = ("experiment",)
    date_hierarchy = "computed_at"


@admin.register(m.OfflineEstimate)
class OfflineEstimateAdmin(admin.ModelAdmin):
    list_display = ("computed_at", "experiment", "arm_name", "kind", "model_version", "estimator", "value", "ci_low", "ci_high", "rows")
    list_filter = ("experiment", "estimator", "kind")
    search_fields = ("arm_name", "kind")
    readonly_fields = [f.name for f in m.OfflineEstimate._meta.fields]


@admin.register(m.AllocationEpoch)
class AllocationEpochAdmin(admin.ModelAdmin):
    list_display = ("experiment", "epoch", "started_at", "weights")
    list_filter = ("experiment",)
    readonly_fields = [f.name for f in m.AllocationEpoch._meta.fields]


@admin.register(m.ArmEpochSums)
class ArmEpochSumsAdmin(admin.ModelAdmin):
    list_display = [f.name for f in m.ArmEpochSums._meta.fields][:8]
    list_filter = ("arm__experiment",)
    readonly_fields = [f.name for f in m.ArmEpochSums._meta.fields]
