"""Alerts raised by the rules, the channels that hear about them, and each delivery."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models
from django.db.models import Q

from alerts.choices import (
    AlertRule,
    AlertSeverity,
    AlertStatus,
    ChannelKind,
    NotificationEvent,
    NotificationStatus,
)


class Alert(models.Model):
    rule = models.CharField(max_length=32, choices=AlertRule.choices)
    severity = models.CharField(max_length=16, choices=AlertSeverity.choices)
    status = models.CharField(max_length=16, choices=AlertStatus.choices, default=AlertStatus.OPEN)
    # Subject and rule family, e.g. "response_time:instance:42": at most one unresolved alert each.
    dedup_key = models.CharField(max_length=200)
    # Kept when an instance or group goes away: the alert is history. No FK index of
    # its own on instance: alert_instance_recent_idx starts with it.
    instance = models.ForeignKey(
        "instances.AIInstance",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="alerts",
        db_index=False,
    )
    group = models.ForeignKey(
        "scaling.ProviderGroup", null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts"
    )
    title = models.CharField(max_length=300)
    message = models.TextField(blank=True, default="")
    details = models.JSONField(default=dict, blank=True)
    value = models.FloatField(null=True, blank=True, help_text="The measured value (ms or %), if any.")
    threshold = models.FloatField(null=True, blank=True, help_text="The threshold it crossed.")
    opened_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=200, blank=True, default="")
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            # Deduplicated while open. Also the index services.alerts_evaluate reads
            # the unresolved alerts through (selectors.alerts_unresolved).
            models.UniqueConstraint(
                fields=["dedup_key"], condition=~Q(status=AlertStatus.RESOLVED), name="alert_unique_unresolved_key"
            ),
            models.CheckConstraint(
                condition=Q(status=AlertStatus.RESOLVED, resolved_at__isnull=False)
                | (~Q(status=AlertStatus.RESOLVED) & Q(resolved_at__isnull=True)),
                name="alert_resolved_at_iff_resolved",
            ),
            models.CheckConstraint(condition=Q(severity__in=AlertSeverity.values), name="alert_severity_valid"),
        ]
        indexes = [
            # GET /api/alerts and the admin changelist: newest first (also with severity/rule filters).
            models.Index(fields=["-opened_at"], name="alert_recent_idx"),
            # GET /api/alerts?status=open (and the admin's status filter), newest first.
            models.Index(fields=["status", "-opened_at"], name="alert_status_recent_idx"),
            # GET /api/alerts?instance_id=...: one instance's alerts, newest first.
            models.Index(fields=["instance", "-opened_at"], name="alert_instance_recent_idx"),
        ]

    def __str__(self) -> str:
        return f"[{self.severity}] {self.title} ({self.status})"

    @property
    def is_resolved(self) -> bool:
        return self.status == AlertStatus.RESOLVED


_RECIPIENT_SPLIT = re.compile(r"[\s,;]+")


def parse_recipients(text: str) -> list[str]:
    """Addresses separated by commas, semicolons, spaces or new lines; duplicates dropped."""
    seen: dict[str, None] = {}
    for address in _RECIPIENT_SPLIT.split(text or ""):
        if address:
            seen.setdefault(address, None)
    return list(seen)


def validate_webhook_url(url: str) -> None:
    """http(s) with a host, no credentials in the URL, never a link-local address
    (169.254.169.254 is the cloud metadata service). Set by staff in the admin,
    so loopback and private networks stay allowed (in-cluster receivers, tests)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValidationError("Only http and https URLs are allowed.", code="scheme")
    if not parts.hostname:
        raise ValidationError("The URL has no host.", code="host")
    if parts.username or parts.password:
        raise ValidationError("Credentials in the URL are not allowed; use the secret.", code="credentials")
    try:
        parts.port  # noqa: B018 - raises on a bad port
        address = ipaddress.ip_address(parts.hostname)
    except ValueError as exc:
        if "port" in str(exc).lower():
            raise ValidationError("The URL has an invalid port.", code="port") from None
        return  # a host name
    if address.is_link_local or address.is_unspecified or address.is_multicast:
        raise ValidationError(f"{address} is not an allowed webhook address.", code="forbidden_host")


class NotificationChannel(models.Model):
    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=ChannelKind.choices)
    enabled = models.BooleanField(default=True)
    min_severity = models.CharField(
        max_length=16,
        choices=AlertSeverity.choices,
        default=AlertSeverity.WARNING,
        help_text="Alerts below this severity are not sent here.",
    )
    url = models.CharField(max_length=1000, blank=True, default="", help_text="Webhook only.")
    # Fernet token (ishchat.crypto) of the HMAC signing key; never displayed or serialised.
    secret_encrypted = models.TextField(blank=True, default="", editable=False)
    email_recipients = models.TextField(
        blank=True, default="", help_text="Email only: addresses separated by commas or new lines."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=ChannelKind.values), name="channel_kind_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    @property
    def secret_set(self) -> bool:
        return bool(self.secret_encrypted)

    @property
    def recipients(self) -> list[str]:
        return parse_recipients(self.email_recipients)

    def clean(self) -> None:
        if self.kind == ChannelKind.WEBHOOK:
            if not self.url:
                raise ValidationError({"url": ["A webhook channel needs a URL."]})
            try:
                validate_webhook_url(self.url)
            except ValidationError as exc:
                raise ValidationError({"url": exc.messages}) from None
        if self.kind == ChannelKind.EMAIL:
            recipients = self.recipients
            if not recipients:
                raise ValidationError({"email_recipients": ["An email channel needs at least one recipient."]})
            bad = []
            for address in recipients:
                try:
                    validate_email(address)
                except ValidationError:
                    bad.append(address)
            if bad:
                raise ValidationError({"email_recipients": [f"Not an email address: {', '.join(bad)}."]})


class Notification(models.Model):
    """One event of one alert for one channel; sent by a Celery task, retried with backoff."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="notifications")
    channel = models.ForeignKey(NotificationChannel, on_delete=models.CASCADE, related_name="notifications")
    event = models.CharField(max_length=16, choices=NotificationEvent.choices)
    status = models.CharField(max_length=16, choices=NotificationStatus.choices, default=NotificationStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    claimed_at = models.DateTimeField(null=True, blank=True, help_text="When a worker took it for sending.")
    last_error = models.TextField(blank=True, default="")
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # services.notifications_due: pending rows whose next attempt has come.
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status=NotificationStatus.PENDING),
                name="notification_due_idx",
            ),
            # services.notifications_due: rows a dead worker left in `sending`.
            models.Index(
                fields=["claimed_at"], condition=Q(status=NotificationStatus.SENDING), name="notification_sending_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event} of alert {self.alert_id} to {self.channel_id} ({self.status})"
