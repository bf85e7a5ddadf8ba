"""The alerting admin: changelists with bounded queries, the acknowledge action,
a write-only channel secret and the test-notification action."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from alerts import services
from alerts.choices import AlertStatus, ChannelKind
from alerts.models import Alert, Notification, NotificationChannel
from instances.choices import InstanceStatus
from ishchat import crypto
from tests.alerts.conftest import make_group, make_instance

pytestmark = pytest.mark.django_db

SECRET = "whsec-admin-0123456789"


@pytest.fixture
def operator(admin_user: Any) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def raise_alerts(count: int) -> None:
    group = make_group()
    for _ in range(count):
        make_instance(status=InstanceStatus.UNHEALTHY, group=group)
    services.alerts_evaluate()


@pytest.mark.parametrize("model", ["alert", "notificationchannel", "notification"])
def test_changelists_render_in_a_fixed_number_of_queries(operator, model):
    services.channel_create(name="log", kind=ChannelKind.LOG)
    url = reverse(f"admin:alerts_{model}_changelist")
    raise_alerts(1)
    with CaptureQueriesContext(connection) as few:
        assert operator.get(url).status_code == 200
    raise_alerts(15)
    with CaptureQueriesContext(connection) as many:
        response = operator.get(url)

    assert response.status_code == 200
    assert len(many.captured_queries) == len(few.captured_queries)


def test_the_acknowledge_action_calls_the_service(operator, admin_user):
    raise_alerts(2)
    resolved = Alert.objects.filter(rule="instance_unhealthy").earliest("id")
    Alert.objects.filter(pk=resolved.pk).update(status=AlertStatus.RESOLVED, resolved_at=resolved.opened_at)

    response = operator.post(
        reverse("admin:alerts_alert_changelist"),
        {"action": "acknowledge", "_selected_action": list(Alert.objects.values_list("pk", flat=True))},
    )

    assert response.status_code == 302
    assert set(Alert.objects.exclude(pk=resolved.pk).values_list("status", "acknowledged_by")) == {
        ("acknowledged", f"admin:{admin_user.get_username()}")
    }
    assert Alert.objects.get(pk=resolved.pk).status == "resolved"
    texts = [str(m) for m in get_messages(response.wsgi_request)]
    assert "2 alert(s) acknowledged." in texts and "1 alert(s) were already resolved." in texts


def test_the_channel_secret_is_write_only(operator):
    add = operator.post(
        reverse("admin:alerts_notificationchannel_add"),
        {
            "name": "slack",
            "kind": "webhook",
            "enabled": "on",
            "min_severity": "warning",
            "url": "https://hooks.example.com/services/T0/B0/X",
            "secret": SECRET,
            "email_recipients": "",
        },
    )
    assert add.status_code == 302, add.content
    channel = NotificationChannel.objects.get()
    assert crypto.decrypt(channel.secret_encrypted) == SECRET

    page = operator.get(reverse("admin:alerts_notificationchannel_change", args=[channel.pk])).content.decode()
    assert SECRET not in page and channel.secret_encrypted not in page

    # Saving without a secret keeps it; "clear secret" removes it.
    form = {
        "name": "slack",
        "kind": "webhook",
        "enabled": "on",
        "min_severity": "critical",
        "url": "https://hooks.example.com/services/T0/B0/X",
        "email_recipients": "",
    }
    operator.post(reverse("admin:alerts_notificationchannel_change", args=[channel.pk]), form)
    channel.refresh_from_db()
    assert (channel.min_severity, crypto.decrypt(channel.secret_encrypted)) == ("critical", SECRET)
    operator.post(reverse("admin:alerts_notificationchannel_change", args=[channel.pk]), {**form, "clear_secret": "on"})
    channel.refresh_from_db()
    assert channel.secret_encrypted == ""


def test_an_invalid_channel_is_a_form_error_not_a_crash(operator):
    response = operator.post(
        reverse("admin:alerts_notificationchannel_add"),
        {"name": "mail", "kind": "email", "enabled": "on", "min_severity": "warning", "email_recipients": "nope"},
    )

    assert response.status_code == 200
    assert "Not an email address: nope." in response.content.decode()
    assert not NotificationChannel.objects.exists()


def test_the_send_test_action_reports_each_channel(operator, webhook, closed_port_url):
    good = services.channel_create(name="good", kind=ChannelKind.WEBHOOK, url=webhook.url)
    bad = services.channel_create(name="bad", kind=ChannelKind.WEBHOOK, url=closed_port_url)

    response = operator.post(
        reverse("admin:alerts_notificationchannel_changelist"),
        {"action": "send_test", "_selected_action": [good.pk, bad.pk]},
    )

    texts = [str(m) for m in get_messages(response.wsgi_request)]
    assert "good: test notification sent." in texts
    assert any(text.startswith("bad: failed - ConnectError") for text in texts)
    assert len(webhook.received) == 1


def test_notifications_are_read_only(operator):
    services.channel_create(name="log", kind=ChannelKind.LOG)
    raise_alerts(1)
    notification = Notification.objects.earliest("id")

    assert operator.get(reverse("admin:alerts_notification_add")).status_code == 403
    page = operator.get(reverse("admin:alerts_notification_change", args=[notification.pk]))
    assert page.status_code == 200 and b'name="_save"' not in page.content
