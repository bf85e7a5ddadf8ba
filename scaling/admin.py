"""Provider groups (edited through the services) and their scaling events (read-only history).

The group form validates with the same service as the API (the engine's ScalingPolicy.errors()),
saves through group_create/group_update, shows backend settings without secrets and takes a new
webhook secret in a write-only field. Actions evaluate now (dry run or for real) and end a manual
pause; desired_instances changes only through scaling events.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import F, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from instances.admin import ADMIN_MEDIA_CSS, ReadOnlyAdmin, status_badge
from ishchat.errors import ConflictError
from scaling import selectors, services
from scaling.models import ProviderGroup, ScalingEvent


def _actor(request: HttpRequest) -> str:
    return f"admin:{request.user.get_username()}"


class ProviderGroupForm(forms.ModelForm):
    backend_secret = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False),
        help_text="Webhook signing secret: write-only; blank keeps the stored one.",
    )

    class Meta:
        model = ProviderGroup
        fields = sorted(services.SETTABLE_FIELDS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and "backend_settings" in self.fields:
            shown = services.public_backend_settings(self.instance)
            shown.pop("secret_set", None)
            self.initial["backend_settings"] = shown

    def service_changes(self) -> dict[str, Any]:
        """What the services get: the settable fields (all on create, the changed ones on change)."""
        names = self.fields if self.instance.pk is None else self.changed_data
        changes = {name: self.cleaned_data[name] for name in names if name in services.SETTABLE_FIELDS}
        secret = self.cleaned_data.get("backend_secret")
        if secret:
            settings = dict(self.cleaned_data.get("backend_settings") or {})
            settings["secret"] = secret
            changes["backend_settings"] = settings
        return changes

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        try:
            existing = ProviderGroup.objects.get(pk=self.instance.pk) if self.instance.pk else None
            services.group_validate(group=existing, changes=self.service_changes())
        except ValidationError as exc:
            for field, problems in exc.message_dict.items():
                self.add_error(field if field in self.fields else None, problems)
        return cleaned

    def _post_clean(self) -> None:
        # The model is validated by the service (above), which also knows the engine's rules.
        pass


@admin.register(ProviderGroup)
class ProviderGroupAdmin(admin.ModelAdmin):
    form = ProviderGroupForm
    list_display = (
        "group_name",
        "provider_type",
        "model_name",
        "min_instances",
        "desired_instances",
        "max_instances",
        "active_instances",
        "serving",
        "standby",
        "auto_scaling_enabled",
        "backend",
        "last_direction",
        "last_evaluated_at",
    )
    list_filter = ("provider_type", "auto_scaling_enabled", "backend", "predictive_mode")
    search_fields = ("group_name", "model_name", "description")
    actions = ("evaluate_dry_run", "evaluate_now", "resume_automation")
    readonly_fields = (
        "policy_warnings",
        "desired_instances",
        "paused_until",
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
                    ("scale_up_threshold", "scale_down_threshold", "target_utilization", "tolerance"),
                    ("scale_up_cooldown", "scale_down_cooldown", "scale_down_stabilization_seconds"),
                    ("scale_up_limit_percent", "scale_up_limit_instances", "scale_down_limit_percent"),
                    "triggers",
                    ("predictive_mode", "instance_capacity_rpm", "forecast_horizon_seconds"),
                    ("forecast_season_minutes", "forecast_seasonality"),
                    "schedules",
                    "paused_until",
                    "policy_warnings",
                )
            },
        ),
        ("Backend", {"fields": ("backend", "backend_settings", "backend_secret")}),
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
        # active_count: registered (not deregistered) instances, the column linking to them.
        return selectors.group_list().annotate(active_count=F("total_instances"))

    def save_model(self, request: HttpRequest, obj: ProviderGroup, form: ProviderGroupForm, change: bool) -> None:
        changes = form.service_changes()
        try:
            if change:
                saved = services.group_update(group=ProviderGroup.objects.get(pk=obj.pk), changes=changes)
            else:
                values = dict(changes)
                saved = services.group_create(
                    group_name=values.pop("group_name"), provider_type=values.pop("provider_type"), **values
                )
        except ConflictError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        obj.pk = saved.pk
        for warning in services.group_policy_warnings(saved):
            self.message_user(request, f"Warning: {warning}", messages.WARNING)

    @admin.display(description="policy warnings")
    def policy_warnings(self, obj: ProviderGroup) -> str:
        if obj.pk is None:
            return "-"
        return "; ".join(services.group_policy_warnings(obj)) or "none"

    @admin.display(description="active instances", ordering="active_count")
    def active_instances(self, obj: ProviderGroup) -> str:
        url = f"{reverse('admin:instances_aiinstance_changelist')}?group__id__exact={obj.pk}&is_active__exact=1"
        return format_html('<a href="{}">{}</a>', url, obj.active_count)  # type: ignore[attr-defined]  # annotated

    @admin.display(description="serving")
    def serving(self, obj: ProviderGroup) -> int:
        return obj.active_instances  # type: ignore[attr-defined]  # annotated: healthy or degraded

    @admin.display(description="standby", ordering="standby_instances")
    def standby(self, obj: ProviderGroup) -> int:
        return obj.standby_instances  # type: ignore[attr-defined]  # annotated

    @admin.display(description="last decision")
    def last_direction(self, obj: ProviderGroup) -> str:
        decision = obj.last_decision or {}
        if not decision:
            return "-"
        return f"{decision.get('direction')} ({decision.get('outcome', '?')})"

    def _evaluate(self, request: HttpRequest, queryset: QuerySet[ProviderGroup], *, dry_run: bool) -> None:
        for result in services.groups_evaluate(group_ids=[group.pk for group in queryset], dry_run=dry_run):
            name = result.get("group_name", result["group_id"])
            level = messages.ERROR if result["outcome"] in ("error", "locked") else messages.INFO
            self.message_user(request, f"{name}: {result['outcome']}: {result['reason']}", level)

    @admin.action(description="Evaluate now (dry run)")
    def evaluate_dry_run(self, request: HttpRequest, queryset: QuerySet[ProviderGroup]) -> None:
        self._evaluate(request, queryset, dry_run=True)

    @admin.action(description="Evaluate now", permissions=["change"])
    def evaluate_now(self, request: HttpRequest, queryset: QuerySet[ProviderGroup]) -> None:
        self._evaluate(request, queryset, dry_run=False)

    @admin.action(description="Resume automatic scaling (end a manual pause)", permissions=["change"])
    def resume_automation(self, request: HttpRequest, queryset: QuerySet[ProviderGroup]) -> None:
        for group in queryset:
            services.group_resume(group=group)
        self.message_user(request, f"{queryset.count()} group(s) resumed.", messages.SUCCESS)


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
