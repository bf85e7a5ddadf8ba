"""Delivery through real channels: a webhook receiver on loopback (no mocks of
httpx), Django's locmem mail backend, the `alerts` logger; retries with backoff."""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from alerts import channels, services, tasks
from alerts.choices import ChannelKind, NotificationStatus
from alerts.models import Alert, Notification
from instances.choices import InstanceStatus
from ishchat import crypto
from tests.alerts.conftest import add_check, make_instance

pytestmark = pytest.mark.django_db

SECRET = "whsec-0123456789abcdef"


def open_unhealthy_alert(django_capture_on_commit_callbacks, *, execute: bool = True) -> Alert:
    """Evaluate on the real clock and run the queued delivery tasks (Celery is eager in tests)."""
    make_instance("vllm-7", status=InstanceStatus.UNHEALTHY, status_reason="3 failed checks: HTTP 503")
    with django_capture_on_commit_callbacks(execute=execute):
        services.alerts_evaluate()
    return Alert.objects.get()


def test_a_webhook_gets_the_alert_as_signed_json_with_a_slack_text(webhook, django_capture_on_commit_callbacks):
    channel = services.channel_create(name="slack", kind=ChannelKind.WEBHOOK, url=webhook.url, secret=SECRET)

    alert = open_unhealthy_alert(django_capture_on_commit_callbacks)

    (request,) = webhook.received
    assert request.path == "/hooks/alerts"
    assert request.headers["content-type"] == "application/json"
    body = request.json()
    assert body["event"] == "opened"
    assert (body["id"], body["rule"], body["severity"], body["status"]) == (
        alert.pk,
        "instance_unhealthy",
        "critical",
        "open",
    )
    assert alert.instance is not None
    assert body["instance_name"] == "vllm-7" and body["instance_id"] == str(alert.instance.instance_id)
    assert body["dedup_key"] == alert.dedup_key and body["opened_at"] == alert.opened_at.isoformat()
    assert body["text"] == (
        "[CRITICAL] opened: Instance vllm-7 is unhealthy - vllm-7 is unhealthy: 3 failed checks: HTTP 503"
    )
    assert "\n" not in body["text"]

    timestamp = request.headers["x-ishchat-timestamp"]
    expected = hmac.new(SECRET.encode(), timestamp.encode() + b"." + request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-ishchat-signature"] == f"sha256={expected}"
    assert abs(int(timestamp) - timezone.now().timestamp()) < 60

    notification = Notification.objects.get()
    assert (notification.channel, notification.status, notification.attempts) == (channel, "sent", 1)
    assert notification.sent_at is not None and notification.last_error == ""
    assert body["notification_id"] == notification.pk


def test_without_a_secret_the_webhook_is_not_signed(webhook, django_capture_on_commit_callbacks):
    services.channel_create(name="plain", kind=ChannelKind.WEBHOOK, url=webhook.url)

    open_unhealthy_alert(django_capture_on_commit_callbacks)

    (request,) = webhook.received
    assert "x-ishchat-signature" not in request.headers


def test_the_secret_is_stored_encrypted(webhook):
    channel = services.channel_create(name="slack", kind=ChannelKind.WEBHOOK, url=webhook.url, secret=SECRET)

    channel.refresh_from_db()
    assert SECRET not in channel.secret_encrypted and crypto.decrypt(channel.secret_encrypted) == SECRET
    services.channel_save(channel=channel)  # None keeps it
    assert crypto.decrypt(channel.secret_encrypted) == SECRET
    services.channel_save(channel=channel, secret="")  # "" clears it
    assert channel.secret_encrypted == ""


def test_a_failing_webhook_is_retried_with_backoff_then_fails_without_touching_evaluation(
    webhook, django_capture_on_commit_callbacks
):
    webhook.status = 500
    services.channel_create(name="down", kind=ChannelKind.WEBHOOK, url=webhook.url)

    open_unhealthy_alert(django_capture_on_commit_callbacks)  # the first attempt fails inside; nothing raises

    notification = Notification.objects.get()
    assert (notification.status, notification.attempts) == ("pending", 1)
    assert notification.last_error == "HTTP 500: receiver is down"
    clock = notification.next_attempt_at
    assert notification.claimed_at is not None and clock - notification.claimed_at == timedelta(seconds=30)

    # Not due yet: no request, no attempt.
    assert services.notification_deliver(notification_id=notification.pk, now=clock - timedelta(seconds=1)) is None
    assert len(webhook.received) == 1

    waits = []
    for _ in range(4):
        assert services.notifications_due(now=clock) == [notification.pk]
        done = services.notification_deliver(notification_id=notification.pk, now=clock)
        assert done is not None
        waits.append(done.next_attempt_at - clock if done.status == "pending" else None)
        clock = done.next_attempt_at

    notification.refresh_from_db()
    assert waits == [timedelta(seconds=60), timedelta(seconds=120), timedelta(seconds=240), None]
    assert (notification.status, notification.attempts) == (NotificationStatus.FAILED, services.MAX_ATTEMPTS)
    assert len(webhook.received) == services.MAX_ATTEMPTS
    assert services.notifications_due(now=clock + timedelta(days=1)) == []


def test_a_closed_port_is_a_recorded_failure(closed_port_url, django_capture_on_commit_callbacks):
    services.channel_create(name="nobody", kind=ChannelKind.WEBHOOK, url=closed_port_url)

    open_unhealthy_alert(django_capture_on_commit_callbacks)

    notification = Notification.objects.get()
    assert (notification.status, notification.attempts) == ("pending", 1)
    assert notification.last_error.startswith("ConnectError")


def test_redirects_are_not_followed(webhook, django_capture_on_commit_callbacks):
    webhook.status = 302
    services.channel_create(name="moved", kind=ChannelKind.WEBHOOK, url=webhook.url)

    open_unhealthy_alert(django_capture_on_commit_callbacks)

    notification = Notification.objects.get()
    assert notification.last_error.startswith("HTTP 302")
    assert len(webhook.received) == 1


def test_a_notification_is_sent_once_even_if_queued_twice(webhook, django_capture_on_commit_callbacks):
    services.channel_create(name="slack", kind=ChannelKind.WEBHOOK, url=webhook.url)
    open_unhealthy_alert(django_capture_on_commit_callbacks, execute=False)
    notification = Notification.objects.get()

    first = tasks.alert_notification_deliver.delay(notification.pk)
    second = tasks.alert_notification_deliver.delay(notification.pk)

    assert (first.get(), second.get()) == ("sent", None)
    assert len(webhook.received) == 1


def test_a_row_a_dead_worker_left_in_sending_is_handed_back(webhook):
    services.channel_create(name="slack", kind=ChannelKind.WEBHOOK, url=webhook.url)
    make_instance(status=InstanceStatus.UNHEALTHY)
    services.alerts_evaluate()
    notification = Notification.objects.get()
    claimed_at = timezone.now() - services.STALE_SENDING - timedelta(seconds=1)
    Notification.objects.filter(pk=notification.pk).update(status="sending", claimed_at=claimed_at, attempts=1)

    assert tasks.alert_notifications_retry_due.delay().get() == 1

    notification.refresh_from_db()
    assert (notification.status, notification.attempts) == ("sent", 2)
    assert len(webhook.received) == 1


def test_email_goes_to_every_recipient_through_djangos_mail(django_capture_on_commit_callbacks):
    services.channel_create(
        name="oncall", kind=ChannelKind.EMAIL, email_recipients="a@example.com, b@example.com\na@example.com"
    )

    open_unhealthy_alert(django_capture_on_commit_callbacks)

    (message,) = mail.outbox
    assert message.to == ["a@example.com", "b@example.com"]
    assert (
        message.subject
        == "[ISH Chat] [CRITICAL] opened: Instance vllm-7 is unhealthy - vllm-7 is unhealthy: 3 failed checks: HTTP 503"
    )
    assert "rule: instance_unhealthy" in message.body
    assert Notification.objects.get().status == "sent"


def test_the_log_channel_writes_to_the_alerts_logger(caplog, django_capture_on_commit_callbacks):
    services.channel_create(name="log", kind=ChannelKind.LOG)

    with caplog.at_level(logging.INFO, logger="alerts"):
        alert = open_unhealthy_alert(django_capture_on_commit_callbacks)

    (record,) = [r for r in caplog.records if r.name == "alerts"]
    assert record.levelno == logging.ERROR and record.getMessage().startswith("[CRITICAL] opened: Instance vllm-7")
    assert (record.alert_id, record.alert_event, record.channel) == (alert.pk, "opened", "log")


def test_resolution_is_delivered_too(webhook, django_capture_on_commit_callbacks):
    services.channel_create(name="slack", kind=ChannelKind.WEBHOOK, url=webhook.url)
    instance = make_instance("vllm-9")
    add_check(instance, at=timezone.now() - timedelta(seconds=30), response_time_ms=2600)
    with django_capture_on_commit_callbacks(execute=True):
        services.alerts_evaluate()
    add_check(instance, at=timezone.now(), response_time_ms=200)

    with django_capture_on_commit_callbacks(execute=True):
        services.alerts_evaluate()

    opened, resolved = (request.json() for request in webhook.received)
    assert (opened["event"], opened["text"].split(":")[0]) == ("opened", "[WARNING] opened")
    assert (resolved["event"], resolved["status"]) == ("resolved", "resolved")
    assert resolved["text"].startswith("[RESOLVED] resolved: Response time 2600 ms on vllm-9")


def test_a_channel_disabled_before_delivery_does_not_send(webhook, django_capture_on_commit_callbacks):
    channel = services.channel_create(name="slack", kind=ChannelKind.WEBHOOK, url=webhook.url)
    open_unhealthy_alert(django_capture_on_commit_callbacks, execute=False)
    channel.enabled = False
    services.channel_save(channel=channel)

    done = services.notification_deliver(notification_id=Notification.objects.get().pk)

    assert done is not None
    assert done.status == "failed" and "disabled" in done.last_error
    assert webhook.received == []


def test_the_test_notification_is_sent_now(webhook, closed_port_url):
    channel = services.channel_create(name="slack", kind=ChannelKind.WEBHOOK, url=webhook.url, secret=SECRET)

    services.channel_send_test(channel=channel)

    (request,) = webhook.received
    assert request.json()["test"] is True and "x-ishchat-signature" in request.headers
    channel.url = closed_port_url
    with pytest.raises(channels.DeliveryError):
        services.channel_send_test(channel=channel)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"kind": "webhook", "url": ""}, "url"),
        ({"kind": "webhook", "url": "ftp://example.com/hook"}, "url"),
        ({"kind": "webhook", "url": "http://169.254.169.254/latest"}, "url"),
        ({"kind": "webhook", "url": "https://user:pw@example.com/hook"}, "url"),
        ({"kind": "email", "email_recipients": ""}, "email_recipients"),
        ({"kind": "email", "email_recipients": "ops@example.com, not-an-address"}, "email_recipients"),
    ],
)
def test_channels_are_validated(fields, field):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as error:
        services.channel_create(name="bad", **fields)
    assert field in error.value.message_dict
