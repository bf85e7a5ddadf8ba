"""The Celery tasks: thin wrappers that take ids, guard overlap and call one service."""

from __future__ import annotations

import pytest

from alerts import tasks
from alerts.choices import ChannelKind
from alerts.models import Alert, Notification
from alerts.services import channel_create
from instances.choices import InstanceStatus
from ishchat.locks import lease
from tests.alerts.conftest import make_instance

pytestmark = pytest.mark.django_db


def test_the_periodic_evaluation_opens_alerts_and_sends_after_commit(django_capture_on_commit_callbacks):
    channel_create(name="log", kind=ChannelKind.LOG)
    make_instance(status=InstanceStatus.UNHEALTHY)

    with django_capture_on_commit_callbacks(execute=True):
        summary = tasks.alerts_evaluate.delay().get()

    assert summary["opened"] == 1 and Alert.objects.count() == 1
    assert Notification.objects.get().status == "sent"


def test_overlapping_evaluations_are_skipped():
    make_instance(status=InstanceStatus.UNHEALTHY)

    with lease("alerts-evaluate", ttl_seconds=60) as held:
        assert held
        assert tasks.alerts_evaluate.delay().get() is None

    assert not Alert.objects.exists()
    assert tasks.alerts_evaluate.delay().get()["opened"] == 1


def test_the_delivery_task_ignores_unknown_ids():
    assert tasks.alert_notification_deliver.delay(123456).get() is None


def test_the_task_names_are_stable():
    # ishchat/periodic.py and queued messages refer to these names.
    assert (
        tasks.alerts_evaluate.name,
        tasks.alert_notification_deliver.name,
        tasks.alert_notifications_retry_due.name,
    ) == (
        "alerts.evaluate",
        "alerts.notification_deliver",
        "alerts.notifications_retry_due",
    )
