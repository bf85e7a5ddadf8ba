"""Provider groups (editable) and their scaling events (read-only history)."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from instances.admin import ADMIN_MEDIA_CSS, ReadOnlyAdmin, status_badge
from scaling.models import ProviderGroup, ScalingEvent


@admin.register(ProviderGroup)
class ProviderGroupAdmin(admin.ModelAdmin):
    list_display = (
        "group_name",
        "provider_type",
        "model_name",
        "min_instances",
        "desired_instances",
        "max_instances",
        "active_instances",
        "auto_scaling_enabled",
        "backend",
        "last_evaluated_at",
    )
    list_filter = ("provider_type", "auto_scaling_enabled", "backend", "predictive_mode")
    search_fields = ("group_name", "model_name", "description")
    readonly_fields = (
        "last_decision",
        "last_evaluated_at",
        "last_scale_up_at",
        "last_scale_down_at",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("group_name", "provider_type", "model_name", "description")}),
        ("Size", {"fields": (("min_instances", "desired_instances", "max_instances"),)}),
        (
            "Auto-scaling",
            {
                "fields": (
                    "auto_scaling_enabled",
                    ("scale_up_threshold", "scale_down_threshold", "target_utilization"),
                    ("scale_up_cooldown", "scale_down_cooldown", "scale_down_stabilization_seconds"),
                    "triggers",
                    "predictive_mode",
                    "schedules",
                    "paused_until",
                )
            },
        ),
        ("Backend", {"fields": ("backend", "backend_settings")}),
        (
            "Last decision",
            {
                "fields": ("last_decision", "last_evaluated_at", "last_scale_up_at", "last_scale_down_at"),
                "classes": ("collapse",),
            },
        ),
        ("Timestamps", {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )

    class Media:
        css = ADMIN_MEDIA_CSS

    def get_queryset(self, request: HttpRequest) -> QuerySet[ProviderGroup]:
        return (
            super()
            .get_queryset(request)
            .annotate(active_count=Count("instances", filter=Q(instances__is_active=True)))
        )

    @admin.display(description="active instances", ordering="active_count")
    def active_instances(self, obj: ProviderGroup) -> str:
        url = f"{reverse('admin:instances_aiinstance_changelist')}?group__id__exact={obj.pk}&is_active__exact=1"
        return format_html('<a href="{}">{}</a>', url, obj.active_count)  # type: ignore[attr-defined]  # annotated


@admin.register(ScalingEvent)
class ScalingEventAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "group",
        "direction",
        "count_change",
        "trigger",
        "status_column",
        "backend",
        "attempts",
        "completed_at",
    )
    list_filter = ("direction", "status", "trigger", "backend", "created_at")
    list_select_related = ("group",)
    raw_id_fields = ("group",)
    date_hierarchy = "created_at"
    search_fields = ("group__group_name", "reason")

    @admin.display(description="instances")
    def count_change(self, obj: ScalingEvent) -> str:
        return f"{obj.old_count} → {obj.new_count}"

    @admin.display(description="status", ordering="status")
    def status_column(self, obj: ScalingEvent) -> str:
        return status_badge(obj.status, obj.get_status_display())
