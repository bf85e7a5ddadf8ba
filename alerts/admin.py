"""The operator's admin for alerting.

Alerts are made by the evaluation and changed only by the acknowledge action
(the service); channels are saved through the service, which encrypts the
signing secret, a write-only field; notifications are a read-only log.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from alerts import channels, services
from alerts.choices import AlertSeverity, AlertStatus, NotificationStatus
from alerts.models import Alert, Notification, NotificationChannel
from instances.admin import ReadOnlyAdmin
from ishchat.errors import ConflictError

_BADGE_COLOURS: dict[str, str] = {
    AlertSeverity.WARNING: "#b7791f",
    AlertSeverity.CRITICAL: "#c53030",
    AlertStatus.OPEN: "#c53030",
    AlertStatus.ACKNOWLEDGED: "#b7791f",
    AlertStatus.RESOLVED: "#2f855a",
    NotificationStatus.PENDING: "#718096",
    NotificationStatus.SENDING: "#2b6cb0",
    NotificationStatus.SENT: "#2f855a",
    NotificationStatus.FAILED: "#c53030",
}


def badge(value: str, label: str) -> str:
    colour = _BADGE_COLOURS.get(value, "#4a5568")
    return format_html(
        '<span style="background:{};color:#fff;padding:1px 7px;border-radius:8px;font-size:11px;'
        'white-space:nowrap">{}</span>',
        colour,
        label,
    )


def _actor(request: HttpRequest) -> str:
    return f"admin:{request.user.get_username()}"


class UnresolvedFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("unresolved", "Not resolved (open or acknowledged)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Alert]) -> QuerySet[Alert]:
        if self.value() == "unresolved":
            return queryset.exclude(status=AlertStatus.RESOLVED)
        return queryset


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "title",
        "severity_badge",
        "status_badge",
        "rule",
        "instance",
        "group",
        "opened_at",
        "last_seen_at",
        "resolved_at",
        "acknowledged_by",
    )
    list_display_links = ("id", "title")
    list_filter = (UnresolvedFilter, "status", "severity", "rule", "opened_at")
    list_select_related = ("instance", "group")
    search_fields = ("title", "dedup_key", "instance__instance_name", "group__group_name")
    date_hierarchy = "opened_at"
    raw_id_fields = ("instance", "group")
    show_full_result_count = False
    actions = ("acknowledge",)
    fields = (
        "title",
        "message",
        ("rule", "severity", "status"),
        "dedup_key",
        ("instance", "group"),
        ("value", "threshold"),
        "details",
        ("opened_at", "last_seen_at"),
        ("acknowledged_at", "acknowledged_by"),
        "resolved_at",
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [name for row in self.fields for name in (row if isinstance(row, tuple) else (row,))]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="severity", ordering="severity")
    def severity_badge(self, alert: Alert) -> str:
        return badge(alert.severity, alert.get_severity_display())

    @admin.display(description="status", ordering="status")
    def status_badge(self, alert: Alert) -> str:
        return badge(alert.status, alert.get_status_display())

    @admin.action(description="Acknowledge selected alerts", permissions=["change"])
    def acknowledge(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        done, resolved = 0, 0
        for alert in queryset:
            try:
                services.alert_acknowledge(alert=alert, actor=_actor(request))
            except ConflictError:
                resolved += 1
            else:
                done += 1
        if done:
            self.message_user(request, f"{done} alert(s) acknowledged.", messages.SUCCESS)
        if resolved:
            self.message_user(request, f"{resolved} alert(s) were already resolved.", messages.WARNING)


class NotificationChannelForm(forms.ModelForm):
    """The secret is write-only: never rendered back, blank keeps the stored one."""

    secret = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Webhook HMAC signing key. Leave blank to keep the current one; it is never shown again.",
    )
    clear_secret = forms.BooleanField(required=False, help_text="Remove the signing key (requests go unsigned).")

    class Meta:
        model = NotificationChannel
        fields = ("name", "kind", "enabled", "min_severity", "url", "email_recipients")


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    form = NotificationChannelForm
    list_display = ("name", "kind", "enabled", "min_severity", "target", "secret_set", "updated_at")
    list_filter = ("kind", "enabled", "min_severity")
    search_fields = ("name", "url", "email_recipients")
    readonly_fields = ("secret_set", "created_at", "updated_at")
    fields = (
        "name",
        "kind",
        "enabled",
        "min_severity",
        "url",
        "secret",
        "clear_secret",
        "secret_set",
        "email_recipients",
        ("created_at", "updated_at"),
    )
    actions = ("send_test",)

    @admin.display(description="target")
    def target(self, channel: NotificationChannel) -> str:
        if channel.url:
            return channel.url
        return ", ".join(channel.recipients) or "-"

    @admin.display(description="secret set", boolean=True)
    def secret_set(self, channel: NotificationChannel) -> bool:
        return channel.secret_set

    def save_model(self, request: HttpRequest, obj: NotificationChannel, form: forms.ModelForm, change: bool) -> None:
        secret: str | None = form.cleaned_data.get("secret") or None
        if form.cleaned_data.get("clear_secret"):
            secret = ""
        services.channel_save(channel=obj, secret=secret)

    @admin.action(description="Send a test notification")
    def send_test(self, request: HttpRequest, queryset: QuerySet[NotificationChannel]) -> None:
        for channel in queryset:
            try:
                services.channel_send_test(channel=channel)
            except channels.DeliveryError as exc:
                self.message_user(request, f"{channel.name}: failed - {exc}", messages.ERROR)
            else:
                self.message_user(request, f"{channel.name}: test notification sent.", messages.SUCCESS)


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "alert",
        "channel",
        "event",
        "status_badge",
        "attempts",
        "next_attempt_at",
        "sent_at",
        "short_error",
        "created_at",
    )
    list_filter = ("status", "event", "channel")
    list_select_related = ("alert", "channel")
    search_fields = ("alert__title", "last_error")
    raw_id_fields = ("alert",)
    show_full_result_count = False


    @admin.display(description="status", ordering="status")
    def status_badge(self, notification: Notification) -> str:
        return badge(notification.status, notification.get_status_display())

    @admin.display(description="last error")
    def short_error(self, notification: Notification) -> str:
        error = notification.last_error
        return error if len(error) <= 80 else f"{error[:77]}..."
