"""The operator's admin for the registry.

Instances are written only through the services (the form registers and
updates, the actions enable, park, drain and deregister), so the admin obeys
the same rules as the API. History models are read-only and sized for big
tables: select_related, no full counts, raw id widgets.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import ValidationError
from django.db.models import F, FloatField, Model, QuerySet
from django.db.models.functions import Cast
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.views.decorators.debug import sensitive_post_parameters

from gateway import services as lb_services
from instances import services
from instances.balancer.breaker import BreakerState, Phase
from instances.balancer.state import get_state_store
from instances.choices import PARKED_STATUSES, InstanceStatus
from instances.forms import AIInstanceAdminForm
from instances.models import (
    AIInstance,
    HealthCheck,
    InstanceMetrics,
    LoadBalancerConfig,
    RequestLog,
    StatusTransition,
)

HISTORY_INLINE_ROWS = 20

# Statuses an operator parked or is draining; the "enable" action brings them back.
ENABLEABLE_STATUSES = PARKED_STATUSES | {InstanceStatus.DRAINING}

ADMIN_MEDIA_CSS = {"all": ("admin-extra/admin.css",)}


def status_badge(status: str, label: str) -> str:
    return format_html('<span class="ism-badge ism-badge--{}">{}</span>', status, label)


def _actor(request: HttpRequest) -> str:
    return f"admin:{request.user.get_username()}"


def _changelist_url(model: type[Model], **filters: Any) -> str:
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    query = "&".join(f"{name}={value}" for name, value in filters.items())
    return f"{url}?{query}" if query else url


# --- List filters ------------------------------------------------------------


class NeedsAttentionFilter(admin.SimpleListFilter):
    title = "health"
    parameter_name = "attention"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("unhealthy", "Unhealthy or degraded")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[AIInstance]) -> QuerySet[AIInstance]:
        if self.value() == "unhealthy":
            return queryset.filter(status__in=[InstanceStatus.UNHEALTHY, InstanceStatus.DEGRADED])
        return queryset


class OverloadedFilter(admin.SimpleListFilter):
    title = "load"
    parameter_name = "load"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("overloaded", "Overloaded (load >= capacity)"), ("idle", "Idle (no load)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[AIInstance]) -> QuerySet[AIInstance]:
        if self.value() == "overloaded":
            return queryset.filter(current_load__gte=F("max_concurrent_requests"))
        if self.value() == "idle":
            return queryset.filter(current_load=0)
        return queryset


class OpenBreakerFilter(admin.SimpleListFilter):
    """Instances whose circuit breaker is not closed, read from the shared balancer state."""

    title = "circuit breaker"
    parameter_name = "breaker"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("open", "Open or half-open")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[AIInstance]) -> QuerySet[AIInstance]:
        if self.value() != "open":
            return queryset
        # The store keeps breakers by instance id and cannot be queried by phase:
        # read every active instance's breaker in one call, keep the ones not closed.
        ids = [str(iid) for iid in queryset.filter(is_active=True).values_list("instance_id", flat=True)]
        now = time.time()
        states = get_state_store().breaker_states(ids)
        not_closed = [iid for iid, state in states.items() if state.phase_at(now) is not Phase.CLOSED]
        return queryset.filter(instance_id__in=not_closed)


class BreakerChangeList(ChangeList):
    """Reads the breakers of the page's rows from the shared state in one call."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        # Iterating fills the page queryset's cache: the template renders these same objects.
        rows = list(self.result_list)
        states = get_state_store().breaker_states([str(row.instance_id) for row in rows])
        for row in rows:
            row.breaker_state = states[str(row.instance_id)]


# --- Read-only history inlines -------------------------------------------------


class NewestRowsFormSet(BaseInlineFormSet):
    """Only the newest HISTORY_INLINE_ROWS rows of the parent's history.

    The formset filters the inline's queryset by the parent after
    InlineModelAdmin.get_queryset, so the cap cannot be a slice there; it is
    a pk__in over a sliced subquery of this parent's rows (model ordering is
    newest first).
    """

    def get_queryset(self) -> QuerySet:
        if not hasattr(self, "_newest"):
            rows = super().get_queryset()
            self._newest = rows.filter(pk__in=rows.values("pk")[:HISTORY_INLINE_ROWS])
        return self._newest


class HistoryInline(admin.TabularInline):
    formset = NewestRowsFormSet
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class HealthCheckInline(HistoryInline):
    model = HealthCheck
    verbose_name_plural = f"Recent health checks (newest {HISTORY_INLINE_ROWS})"
    fields = ("checked_at", "check_type", "status", "score", "response_time_ms", "error_kind", "issues")


class StatusTransitionInline(HistoryInline):
    model = StatusTransition
    verbose_name_plural = f"Recent status changes (newest {HISTORY_INLINE_ROWS})"
    fields = ("created_at", "old_status", "new_status", "reason", "source", "processed_at")


# --- Instances -------------------------------------------------------------------

_STATE_FIELDS = (
    "status_display",
    "status_reason",
    "is_active",
    "current_load",
    "health_score",
    "consecutive_successes",
    "consecutive_failures",
    "last_health_check_at",
    "next_health_check_at",
    "history_links",
)
_TIMESTAMP_FIELDS = ("created_at", "updated_at", "deregistered_at")


@admin.register(AIInstance)
class AIInstanceAdmin(admin.ModelAdmin):
    form = AIInstanceAdminForm
    list_display = (
        "instance_name",
        "provider_model",
        "status_column",
        "load_column",
        "health_column",
        "weight",
        "priority",
        "group",
        "region",
        "breaker_column",
        "last_health_check_at",
    )
    list_filter = (
        "provider_type",
        "status",
        NeedsAttentionFilter,
        OverloadedFilter,
        OpenBreakerFilter,
        "is_active",
        "group",
        "region",
    )
    search_fields = ("instance_name", "model_name", "instance_id", "endpoint_url", "tags")
    date_hierarchy = "created_at"
    list_select_related = ("group",)
    autocomplete_fields = ("group",)
    show_full_result_count = False
    list_per_page = 50
    ordering = ("instance_name",)
    actions = (
        "enable_instances",
        "disable_instances",
        "maintenance_instances",
        "drain_instances",
        "deregister_instances",
    )
    readonly_fields = (
        "instance_id",
        "api_key_display",
        *_STATE_FIELDS,
        *_TIMESTAMP_FIELDS,
    )

    class Media:
        css = ADMIN_MEDIA_CSS

    def get_queryset(self, request: HttpRequest) -> QuerySet[AIInstance]:
        return (
            super()
            .get_queryset(request)
            .annotate(utilisation=Cast("current_load", FloatField()) / F("max_concurrent_requests"))
        )

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return BreakerChangeList

    def get_fieldsets(self, request: HttpRequest, obj: AIInstance | None = None) -> Any:
        routing = (
            "Routing",
            {
                "fields": (
                    ("weight", "priority"),
                    "max_concurrent_requests",
                    ("requests_per_minute", "tokens_per_minute"),
                    "tags",
                    "metadata",
                )
            },
        )
        defaults = (
            "Request defaults",
            {"fields": (("temperature", "max_tokens"), ("timeout", "max_stream_seconds"))},
        )
        if obj is None:
            return [
                (None, {"fields": ("instance_name", "provider_type", "model_name", "endpoint_url", "region", "group")}),
                ("Provider key", {"fields": ("new_api_key",)}),
                routing,
                defaults,
            ]
        key_fields: tuple[str, ...] = ("api_key_display",)
        if self.has_change_permission(request, obj):
            key_fields += ("new_api_key", "clear_api_key")
        return [
            (
                None,
                {
                    "fields": (
                        "instance_id",
                        "instance_name",
                        "provider_type",
                        "model_name",
                        "endpoint_url",
                        "region",
                        "group",
                    )
                },
            ),
            ("Provider key", {"fields": key_fields}),
            routing,
            defaults,
            (
                "State",
                {"fields": _STATE_FIELDS, "description": "Changed by the actions and by health checks, not here."},
            ),
            ("Timestamps", {"fields": _TIMESTAMP_FIELDS, "classes": ("collapse",)}),
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: AIInstance | None = None) -> Any:
        if obj is None:
            return ()
        # The provider decides the client and the key; changing it means a new instance.
        return (*self.readonly_fields, "provider_type")

    def get_inlines(self, request: HttpRequest, obj: AIInstance | None) -> Any:
        # History is for reading: nothing to validate or save on POST.
        if obj is None or request.method == "POST":
            return []
        return [StatusTransitionInline, HealthCheckInline]

    def has_change_permission(self, request: HttpRequest, obj: AIInstance | None = None) -> bool:
        # A deregistered instance is history: viewable, not editable.
        if obj is not None and not obj.is_active:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: AIInstance | None = None) -> bool:
        # Deleting would drop the health and request history; deregister instead.
        return False

    @method_decorator(sensitive_post_parameters("new_api_key"))
    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        return super().changeform_view(request, object_id, form_url, extra_context)

    def save_model(self, request: HttpRequest, obj: AIInstance, form: Any, change: bool) -> None:
        # AIInstanceAdminForm already saved through instance_register/instance_update.
        pass

    # Columns ----------------------------------------------------------------

    @admin.display(description="provider / model", ordering="provider_type")
    def provider_model(self, obj: AIInstance) -> str:
        return f"{obj.provider_type} / {obj.model_name}"

    @admin.display(description="status", ordering="status")
    def status_column(self, obj: AIInstance) -> str:
        badge = status_badge(obj.status, obj.get_status_display())
        if not obj.is_active:
            return format_html('{} <span class="ism-muted">deregistered</span>', badge)
        return badge

    @admin.display(description="status")
    def status_display(self, obj: AIInstance) -> str:
        return self.status_column(obj)

    @admin.display(description="load / capacity", ordering="utilisation")
    def load_column(self, obj: AIInstance) -> str:
        utilisation = obj.utilization
        level = "bad" if utilisation >= 1 else "warn" if utilisation >= 0.8 else "ok"
        return format_html(
            '{} / {} <span class="ism-util ism-util--{}">{}%</span>',
            obj.current_load,
            obj.max_concurrent_requests,
            level,
            round(utilisation * 100),
        )

    @admin.display(description="health score", ordering="health_score")
    def health_column(self, obj: AIInstance) -> str:
        if obj.health_score is None:
            return "—"
        level = "ok" if obj.health_score >= 0.8 else "warn" if obj.health_score >= 0.5 else "bad"
        return format_html('<span class="ism-score ism-score--{}">{}</span>', level, f"{obj.health_score:.2f}")

    @admin.display(description="breaker")
    def breaker_column(self, obj: AIInstance) -> str:
        state: BreakerState | None = getattr(obj, "breaker_state", None)
        if state is None:
            return "—"
        phase = state.phase_at(time.time())
        if phase is Phase.OPEN:
            until = datetime.fromtimestamp(state.open_until, tz=UTC).strftime("%H:%M:%S UTC")
            return format_html(
                '{} <span class="ism-muted">until {}, ejection {}</span>',
                status_badge("unhealthy", "open"),
                until,
                state.ejections,
            )
        if phase is Phase.HALF_OPEN:
            return status_badge("degraded", "half-open")
        if state.consecutive_failures:
            return format_html('closed <span class="ism-muted">{} failing</span>', state.consecutive_failures)
        return "closed"

    @admin.display(description="API key")
    def api_key_display(self, obj: AIInstance) -> str:
        """Whether a key is set and its last four characters at most; never the key."""
        source = services.instance_api_key_source(obj)
        if source == "instance":
            return f"set, ends …{obj.api_key_last4}" if obj.api_key_last4 else "set"
        if source == "environment":
            return f"not set here: from {obj.provider_type.upper()}_API_KEY env"
        return "not set"

    @admin.display(description="history")
    def history_links(self, obj: AIInstance) -> str:
        if obj.pk is None:
            return "—"
        links = [
            (_changelist_url(model, instance__id__exact=obj.pk), label)
            for model, label in (
                (StatusTransition, "status changes"),
                (HealthCheck, "health checks"),
                (RequestLog, "requests"),
                (InstanceMetrics, "metrics"),
            )
        ]
        return format_html_join(" · ", '<a href="{}">All {}</a>', links)

    # Actions ----------------------------------------------------------------

    def _apply(
        self,
        request: HttpRequest,
        queryset: QuerySet[AIInstance],
        *,
        done: str,
        call: Callable[[AIInstance], AIInstance],
        already: Callable[[AIInstance], bool] = lambda instance: False,
        already_text: str = "",
    ) -> None:
        """Call a service per instance and report what changed, what already was, what failed."""
        changed, unchanged, skipped = 0, 0, 0
        failures: list[str] = []
        for instance in queryset:
            if not instance.is_active:
                skipped += 1
                continue
            if already(instance):
                unchanged += 1
                continue
            try:
                call(instance)
            except ValidationError as exc:
                failures.append(f"{instance.instance_name}: {' '.join(exc.messages)}")
                continue
            changed += 1
        if changed:
            noun = "instance" if changed == 1 else "instances"
            self.message_user(request, f"{changed} {noun} {done}.", messages.SUCCESS)
        if unchanged:
            self.message_user(request, f"{unchanged} {already_text}; left as they were.", messages.INFO)
        if skipped:
            self.message_user(request, f"{skipped} deregistered instance(s) skipped.", messages.WARNING)
        for failure in failures:
            self.message_user(request, f"Not changed: {failure}", messages.ERROR)

    def _set_status(self, request: HttpRequest, queryset: QuerySet[AIInstance], status: str) -> None:
        actor = _actor(request)
        self._apply(
            request,
            queryset,
            done=f"set to {status}",
            call=lambda instance: services.instance_set_operator_status(instance=instance, status=status, actor=actor),
            already=lambda instance: instance.status == status,
            already_text=f"already {status}",
        )

    @admin.action(description="Enable (back to starting; health checks promote it)", permissions=["change"])
    def enable_instances(self, request: HttpRequest, queryset: QuerySet[AIInstance]) -> None:
        actor = _actor(request)
        self._apply(
            request,
            queryset,
            done="enabled",
            call=lambda instance: services.instance_enable(instance=instance, actor=actor),
            # Only parked or draining instances need enabling; resetting a serving
            # (healthy, degraded...) instance to `starting` would throw away its health.
            already=lambda instance: instance.status not in ENABLEABLE_STATUSES,
            already_text="already enabled",
        )

    @admin.action(description="Disable (stopped)", permissions=["change"])
    def disable_instances(self, request: HttpRequest, queryset: QuerySet[AIInstance]) -> None:
        self._set_status(request, queryset, InstanceStatus.STOPPED)

    @admin.action(description="Put into maintenance", permissions=["change"])
    def maintenance_instances(self, request: HttpRequest, queryset: QuerySet[AIInstance]) -> None:
        self._set_status(request, queryset, InstanceStatus.MAINTENANCE)

    @admin.action(description="Drain (finish in-flight requests, take no new ones)", permissions=["change"])
    def drain_instances(self, request: HttpRequest, queryset: QuerySet[AIInstance]) -> None:
        self._set_status(request, queryset, InstanceStatus.DRAINING)

    @admin.action(description="Deregister (stop routing for good; history kept)", permissions=["change"])
    def deregister_instances(self, request: HttpRequest, queryset: QuerySet[AIInstance]) -> TemplateResponse | None:
        if request.POST.get("confirm") != "yes":
            opts = self.model._meta
            return TemplateResponse(
                request,
                "admin/instances/aiinstance/deregister_confirmation.html",
                {
                    **self.admin_site.each_context(request),
                    "title": "Deregister instances?",
                    "opts": opts,
                    "instances": [instance for instance in queryset if instance.is_active],
                    "queryset": queryset,
                    "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                    "action": "deregister_instances",
                    "media": self.media,
                },
            )
        actor = _actor(request)
        self._apply(
            request,
            queryset,
            done="deregistered",
            call=lambda instance: services.instance_deregister(instance=instance, actor=actor),
        )
        return None


# --- History (read-only) ---------------------------------------------------------


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by the system; the admin views them."""

    show_full_result_count = False
    list_per_page = 100

    class Media:
        css = ADMIN_MEDIA_CSS

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(HealthCheck)
class HealthCheckAdmin(ReadOnlyAdmin):
    list_display = ("checked_at", "instance", "check_type", "status_column", "score", "response_time_ms", "error_kind")
    list_filter = ("status", "check_type", "error_kind", "checked_at")
    list_select_related = ("instance",)
    raw_id_fields = ("instance",)
    date_hierarchy = "checked_at"
    search_fields = ("instance__instance_name",)

    @admin.display(description="status", ordering="status")
    def status_column(self, obj: HealthCheck) -> str:
        return status_badge(obj.status, obj.get_status_display())


@admin.register(InstanceMetrics)
class InstanceMetricsAdmin(ReadOnlyAdmin):
    list_display = (
        "bucket_start",
        "instance",
        "request_count",
        "failure_count",
        "timeout_count",
        "error_rate",
        "p95_response_ms",
        "prompt_tokens",
        "completion_tokens",
        "estimated_cost",
    )
    list_filter = ("bucket_start", "instance__provider_type")
    list_select_related = ("instance",)
    raw_id_fields = ("instance",)
    date_hierarchy = "bucket_start"
    search_fields = ("instance__instance_name",)


@admin.register(RequestLog)
class RequestLogAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "request_id",
        "instance",
        "provider_type",
        "model_name",
        "status",
        "status_code",
        "total_latency_ms",
        "total_tokens",
        "failover",
        "attempts",
    )
    list_filter = ("status", "provider_type", "failover", "is_stream", "created_at")
    list_select_related = ("instance",)
    raw_id_fields = ("instance", "original_instance")
    date_hierarchy = "created_at"
    search_fields = ("=request_id", "session_id", "model_name")


class ProcessedFilter(admin.SimpleListFilter):
    title = "processed"
    parameter_name = "processed"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("no", "Not yet"), ("yes", "Yes")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() in ("yes", "no"):
            return queryset.filter(processed_at__isnull=self.value() == "no")
        return queryset


@admin.register(StatusTransition)
class StatusTransitionAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "instance", "old_column", "new_column", "reason", "source", "processed_at")
    list_filter = ("new_status", "old_status", "source", ProcessedFilter, "created_at")
    list_select_related = ("instance",)
    raw_id_fields = ("instance",)
    date_hierarchy = "created_at"
    search_fields = ("instance__instance_name", "reason")

    @admin.display(description="from", ordering="old_status")
    def old_column(self, obj: StatusTransition) -> str:
        return status_badge(obj.old_status, obj.get_old_status_display())

    @admin.display(description="to", ordering="new_status")
    def new_column(self, obj: StatusTransition) -> str:
        return status_badge(obj.new_status, obj.get_new_status_display())


# --- Balancing configuration (editable) --------------------------------------------


class LoadBalancerConfigForm(forms.ModelForm):
    """Checks a row as gateway.services.lb_config_check does, so a bad row is a form error, not a failed save."""

    class Meta:
        model = LoadBalancerConfig
        fields = sorted(lb_services.LB_CONFIG_FIELDS)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        # Check a copy: the form's instance is filled in later (_post_clean). A
        # field given an error here is left out of the model's constraint checks,
        # so the operator sees the field's message, not "constraint violated".
        probe = copy.copy(self.instance)
        for name, value in cleaned.items():
            setattr(probe, name, value)
        try:
            lb_services.lb_config_check(probe)
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                self.add_error(field if field in self.fields else None, errors)
        return cleaned


@admin.register(LoadBalancerConfig)
class LoadBalancerConfigAdmin(admin.ModelAdmin):
    form = LoadBalancerConfigForm
    list_display = (
        "scope",
        "provider_type",
        "model_name",
        "strategy",
        "failover_enabled",
        "min_health_score",
        "breaker_failure_threshold",
        "session_affinity",
        "is_active",
        "updated_at",
    )
    list_display_links = ("scope",)
    list_editable = ("strategy",)
    list_filter = ("provider_type", "strategy", "is_active", "failover_enabled", "session_affinity")
    search_fields = ("model_name",)
    readonly_fields = ("created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("provider_type", "model_name", "is_active")}),
        ("Balancing", {"fields": ("strategy", "failover_enabled", "max_failover_attempts", "max_ejection_share")}),
        (
            "Health thresholds",
            {"fields": ("health_check_interval", "healthy_threshold", "unhealthy_threshold", "min_health_score")},
        ),
        (
            "Circuit breaker",
            {
                "fields": (
                    "breaker_failure_threshold",
                    "breaker_failure_rate",
                    "breaker_min_calls",
                    ("breaker_open_seconds", "breaker_max_open_seconds"),
                    "breaker_half_open_probes",
                )
            },
        ),
        ("Session affinity", {"fields": ("session_affinity", "session_ttl_seconds")}),
        ("Timestamps", {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )

    @admin.display(description="scope", ordering="provider_type")
    def scope(self, obj: LoadBalancerConfig) -> str:
        return str(obj)

    # Writes go through gateway.services, as the API's do.

    def save_model(self, request: HttpRequest, obj: LoadBalancerConfig, form: Any, change: bool) -> None:
        values = {name: form.cleaned_data[name] for name in form.cleaned_data if name in lb_services.LB_CONFIG_FIELDS}
        if change:
            stored = LoadBalancerConfig.objects.get(pk=obj.pk)
            changes = {name: values[name] for name in form.changed_data if name in values}
            saved = lb_services.lb_config_update(config=stored, changes=changes)
        else:
            saved = lb_services.lb_config_create(**values)
        # The admin goes on with `obj` (messages, log entry, redirect).
        obj.pk, obj.created_at, obj.updated_at = saved.pk, saved.created_at, saved.updated_at

    def delete_model(self, request: HttpRequest, obj: LoadBalancerConfig) -> None:
        lb_services.lb_config_delete(config=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[LoadBalancerConfig]) -> None:
        for config in queryset:
            lb_services.lb_config_delete(config=config)
