"""Delivery of one alert event to one channel: webhook, email or log.

Every sender raises DeliveryError on failure; services.notification_deliver
records it and schedules the retry, so a failing channel never reaches the
evaluation that raised the alert.

Webhook requests are signed when the channel has a secret:

    X-ISHChat-Timestamp: <unix seconds>
    X-ISHChat-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>

A receiver recomputes the HMAC over the timestamp, a dot and the exact body
bytes, compares in constant time, and rejects old timestamps (replays).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import datetime
from typing import Any

import httpx
from django.core.mail import send_mail

from alerts.choices import AlertSeverity, ChannelKind, NotificationEvent
from alerts.models import Alert, NotificationChannel
from ishchat import crypto

logger = logging.getLogger("alerts")

WEBHOOK_TIMEOUT_SECONDS = 5.0
SIGNATURE_HEADER = "X-ISHChat-Signature"
TIMESTAMP_HEADER = "X-ISHChat-Timestamp"
USER_AGENT = "ishchat-alerts/1.0"
# How much of a failing receiver's answer is kept in Notification.last_error.
ERROR_BODY_BYTES = 300


class DeliveryError(Exception):
    pass


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _slack_escape(text: str) -> str:
    """Slack treats &, < and > as markup; everything else is plain."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def one_line_text(*, event: str, severity: str, title: str, message: str = "") -> str:
    """`[CRITICAL] opened: Instance zai-1 is unhealthy - zai-1 is unhealthy: HTTP 503`."""
    label = "RESOLVED" if event == NotificationEvent.RESOLVED else severity.upper()
    text = f"[{label}] {event}: {title}"
    if message and message != title:
        text = f"{text} - {message}"
    return _slack_escape(" ".join(text.split()))


def alert_payload(alert: Alert, *, event: str, notification_id: int | None = None) -> dict[str, Any]:
    """The JSON a webhook receives (and what email and log render): the alert's
    fields, the event, and a Slack-compatible one-line `text`."""
    instance, group = alert.instance, alert.group
    return {
        "event": event,
        "notification_id": notification_id,
        "id": alert.pk,
        "rule": alert.rule,
        "severity": alert.severity,
        "status": alert.status,
        "dedup_key": alert.dedup_key,
        "title": alert.title,
        "message": alert.message,
        "value": alert.value,
        "threshold": alert.threshold,
        "details": alert.details,
        "instance_id": str(instance.instance_id) if instance else None,
        "instance_name": instance.instance_name if instance else None,
        "group_id": alert.group_id,
        "group_name": group.group_name if group else None,
        "opened_at": _iso(alert.opened_at),
        "last_seen_at": _iso(alert.last_seen_at),
        "acknowledged_at": _iso(alert.acknowledged_at),
        "acknowledged_by": alert.acknowledged_by or None,
        "resolved_at": _iso(alert.resolved_at),
        "text": one_line_text(event=event, severity=alert.severity, title=alert.title, message=alert.message),
    }


def sample_payload(channel: NotificationChannel, *, now: datetime) -> dict[str, Any]:
    """What the admin's "send test notification" sends: the alert shape, marked as a test."""
    title = f"Test notification from ISH Chat to {channel.name}"
    return {
        "event": "test",
        "test": True,
        "notification_id": None,
        "id": None,
        "rule": "test",
        "severity": AlertSeverity.WARNING,
        "status": "open",
        "dedup_key": f"test:channel:{channel.pk}",
        "title": title,
        "message": "If you can read this, the channel works.",
        "value": None,
        "threshold": None,
        "details": {},
        "instance_id": None,
        "instance_name": None,
        "group_id": None,
        "group_name": None,
        "opened_at": now.isoformat(),
        "last_seen_at": now.isoformat(),
        "acknowledged_at": None,
        "acknowledged_by": None,
        "resolved_at": None,
        "text": one_line_text(event="test", severity=AlertSeverity.WARNING, title=title),
    }


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def _read_some(response: httpx.Response, limit: int) -> str:
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit].decode(errors="replace")


def send_webhook(channel: NotificationChannel, payload: dict[str, Any], *, now: datetime) -> None:
    """JSON POST; any 2xx is success. No redirects: a 3xx is a failure, so the
    signed body never lands somewhere the operator did not configure."""
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True, default=str).encode()
    timestamp = str(int(now.timestamp()))
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, TIMESTAMP_HEADER: timestamp}
    if channel.secret_encrypted:
        try:
            secret = crypto.decrypt(channel.secret_encrypted)
        except crypto.DecryptionError as exc:
            raise DeliveryError(str(exc)) from None
        headers[SIGNATURE_HEADER] = signature(secret, timestamp, body)
    try:
        with (
            httpx.Client(timeout=WEBHOOK_TIMEOUT_SECONDS, follow_redirects=False) as client,
            client.stream("POST", channel.url, content=body, headers=headers) as response,
        ):
            if response.is_success:
                return
            snippet = _read_some(response, ERROR_BODY_BYTES).strip()
            raise DeliveryError(f"HTTP {response.status_code}" + (f": {snippet}" if snippet else ""))
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from None


def send_email(channel: NotificationChannel, payload: dict[str, Any]) -> None:
    recipients = channel.recipients
    if not recipients:
        raise DeliveryError("The channel has no recipients.")
    lines = [payload["text"], "", payload["message"], ""]
    for name in ("rule", "severity", "status", "instance_name", "group_name", "value", "threshold", "opened_at"):
        if payload.get(name) is not None:
            lines.append(f"{name}: {payload[name]}")
    if payload.get("resolved_at"):
        lines.append(f"resolved_at: {payload['resolved_at']}")
    try:
        send_mail(
            subject=f"[ISH Chat] {payload['text']}"[:200],
            message="\n".join(lines),
            from_email=None,
            recipient_list=recipients,
            fail_silently=False,
        )
    except Exception as exc:  # smtplib errors, refused connections, bad backend settings
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from None


def send_log(channel: NotificationChannel, payload: dict[str, Any]) -> None:
    if payload["event"] in (NotificationEvent.RESOLVED, NotificationEvent.ACKNOWLEDGED):
        level = logging.INFO
    else:
        level = logging.ERROR if payload["severity"] == AlertSeverity.CRITICAL else logging.WARNING
    extra = {
        f"alert_{name}": payload[name]
        for name in ("id", "event", "rule", "severity", "status", "dedup_key", "instance_name", "group_name", "value")
    }
    logger.log(level, "%s", payload["text"], extra={"channel": channel.name, **extra})


def deliver(channel: NotificationChannel, payload: dict[str, Any], *, now: datetime) -> None:
    """Send `payload` through `channel`; DeliveryError on failure."""
    if channel.kind == ChannelKind.WEBHOOK:
        send_webhook(channel, payload, now=now)
    elif channel.kind == ChannelKind.EMAIL:
        send_email(channel, payload)
    elif channel.kind == ChannelKind.LOG:
        send_log(channel, payload)
    else:
        raise DeliveryError(f"Unknown channel kind {channel.kind!r}.")
