"""services.alerts_evaluate on a real database: open, deduplicate, escalate,
resolve, consume status transitions once, queue notifications."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from alerts import selectors, services
from alerts.choices import AlertRule, AlertSeverity, AlertStatus, ChannelKind
from alerts.models import Alert, Notification
from instances.choices import CheckStatus, InstanceStatus, RequestStatus
from instances.models import RequestLog, StatusTransition
from instances.services import instance_set_status
from tests.alerts.conftest import add_check, add_requests, make_group, make_instance

pytestmark = pytest.mark.django_db


def events(alert: Alert) -> list[tuple[str, str]]:
    return sorted(alert.notifications.values_list("channel__name", "event"))


@pytest.fixture
def log_channel():
    return services.channel_create(name="ops-log", kind=ChannelKind.LOG)


@pytest.fixture
def pager_channel():
    return services.channel_create(
        name="pager", kind=ChannelKind.EMAIL, email_recipients="oncall@example.com", min_severity=AlertSeverity.CRITICAL
    )


def test_it_opens_an_alert_for_a_slow_instance_and_notifies_channels_that_take_its_severity(
    now, log_channel, pager_channel
):
    instance = make_instance("vllm-slow")
    add_check(instance, at=now - timedelta(minutes=1), response_time_ms=2500)

    summary = services.alerts_evaluate(now=now)

    alert = Alert.objects.get()
    assert (alert.rule, alert.severity, alert.status) == (AlertRule.RESPONSE_TIME, "warning", "open")
    assert (alert.instance, alert.value, alert.threshold) == (instance, 2500, 2000)
    assert alert.dedup_key == f"response_time:instance:{instance.pk}"
    assert alert.opened_at == alert.last_seen_at == now
    assert events(alert) == [("ops-log", "opened")]  # the pager wants critical only
    assert summary["opened"] == 1 and summary["notifications"] == 1


def test_a_second_evaluation_keeps_one_alert_and_only_refreshes_it(now, log_channel):
    instance = make_instance()
    add_check(instance, at=now - timedelta(minutes=1), response_time_ms=2500)
    services.alerts_evaluate(now=now)

    later = now + timedelta(seconds=30)
    summary = services.alerts_evaluate(now=later)

    alert = Alert.objects.get()
    assert (alert.status, alert.opened_at, alert.last_seen_at) == ("open", now, later)
    assert summary["opened"] == 0 and summary["updated"] == 1
    assert Notification.objects.count() == 1


def test_critical_supersedes_warning_in_the_same_alert_and_escalation_is_notified(now, log_channel, pager_channel):
    instance = make_instance()
    add_check(instance, at=now - timedelta(minutes=2), response_time_ms=2500)
    services.alerts_evaluate(now=now)

    add_check(instance, at=now, response_time_ms=6200)
    summary = services.alerts_evaluate(now=now + timedelta(seconds=30))

    alert = Alert.objects.get()
    assert (alert.severity, alert.value, alert.threshold) == ("critical", 6200, 5000)
    assert summary["escalated"] == 1
    assert events(alert) == [("ops-log", "escalated"), ("ops-log", "opened"), ("pager", "escalated")]

    # Back to warning: the same alert de-escalates, quietly.
    add_check(instance, at=now + timedelta(seconds=40), response_time_ms=3000)
    services.alerts_evaluate(now=now + timedelta(seconds=60))
    alert.refresh_from_db()
    assert (Alert.objects.count(), alert.severity, alert.status) == (1, "warning", "open")
    assert len(events(alert)) == 3


def test_it_resolves_when_the_condition_clears_and_tells_the_channels_that_heard(now, log_channel, pager_channel):
    instance = make_instance()
    add_check(instance, at=now - timedelta(minutes=1), response_time_ms=6000)
    services.alerts_evaluate(now=now)
    pager_channel.enabled = False
    services.channel_save(channel=pager_channel)

    add_check(instance, at=now, response_time_ms=150)
    resolved_at = now + timedelta(seconds=30)
    summary = services.alerts_evaluate(now=resolved_at)

    alert = Alert.objects.get()
    assert (alert.status, alert.resolved_at) == ("resolved", resolved_at)
    assert summary["resolved"] == 1
    # The disabled pager is not told; a channel that never heard of it would not be either.
    assert events(alert) == [("ops-log", "opened"), ("ops-log", "resolved"), ("pager", "opened")]

    # The key is free again: a new episode is a new alert.
    add_check(instance, at=now + timedelta(seconds=40), response_time_ms=2100)
    services.alerts_evaluate(now=now + timedelta(seconds=60))
    assert list(Alert.objects.order_by("id").values_list("status", flat=True)) == ["resolved", "open"]


def test_error_rate_comes_from_requests_of_the_last_five_minutes(now):
    instance = make_instance()
    add_requests(instance, at=now - timedelta(minutes=2), ok=88, errors=8, timeouts=4)
    add_requests(instance, at=now - timedelta(minutes=20), errors=500)  # outside the window
    RequestLog.objects.create(request_id="gone", instance=instance, status=RequestStatus.CLIENT_CLOSED, created_at=now)

    services.alerts_evaluate(now=now)

    alert = Alert.objects.get(rule=AlertRule.ERROR_RATE)
    assert (alert.severity, alert.value, alert.threshold) == ("critical", 12.0, 10.0)
    assert alert.details == {"source": "requests", "requests": 100, "errors": 12}


def test_without_traffic_the_error_rate_is_the_health_check_failure_ratio(now):
    instance = make_instance()
    for minute in range(1, 5):
        add_check(instance, at=now - timedelta(minutes=minute), status=CheckStatus.HEALTHY, check_type="basic")
    add_check(instance, at=now - timedelta(seconds=10), status=CheckStatus.UNHEALTHY, check_type="basic")

    services.alerts_evaluate(now=now)

    alert = Alert.objects.get(rule=AlertRule.ERROR_RATE)
    assert (alert.severity, alert.value) == ("critical", 20.0)
    assert alert.details["source"] == "health_checks"


def test_the_snapshot_uses_the_p95_of_successful_requests_in_the_window(now):
    instance = make_instance()
    add_requests(instance, at=now - timedelta(minutes=1), latency_ms=[100.0 * i for i in range(1, 21)])
    add_requests(instance, at=now - timedelta(minutes=1), errors=3)  # failures have no say in latency
    quiet = make_instance()

    snapshots = {s.id: s for s in selectors.instance_snapshots(now=now)}

    # Nearest rank: the 19th of 20 sorted values.
    assert (snapshots[instance.pk].request_p95_ms, snapshots[instance.pk].latency_samples) == (1900.0, 20)
    assert (snapshots[instance.pk].requests, snapshots[instance.pk].request_errors) == (23, 3)
    assert (snapshots[quiet.pk].request_p95_ms, snapshots[quiet.pk].requests) == (None, 0)


def test_an_unhealthy_instance_and_a_group_without_a_healthy_one_raise_critical_alerts(now):
    group = make_group("llama-pool")
    make_instance(status=InstanceStatus.UNHEALTHY, group=group)
    make_instance(status=InstanceStatus.STARTING, group=group)
    healthy_group = make_group("fine-pool")
    make_instance(status=InstanceStatus.DEGRADED, group=healthy_group)
    make_instance(status=InstanceStatus.UNHEALTHY, group=healthy_group)
    make_group("empty-pool")

    services.alerts_evaluate(now=now)

    group_alert = Alert.objects.get(rule=AlertRule.GROUP_NO_HEALTHY)
    assert (group_alert.group, group_alert.severity, group_alert.instance) == (group, "critical", None)
    assert Alert.objects.filter(rule=AlertRule.INSTANCE_UNHEALTHY, severity="critical").count() == 2


def test_an_instance_that_went_unhealthy_and_recovered_between_evaluations_still_has_its_alert(now, log_channel):
    instance = make_instance()
    instance_set_status(instance=instance, status=InstanceStatus.UNHEALTHY, reason="3 failed checks", source="health")
    instance_set_status(instance=instance, status=InstanceStatus.HEALTHY, reason="2 good checks", source="health")
    down, up = StatusTransition.objects.order_by("id")
    evaluated_at = up.created_at + timedelta(seconds=1)

    summary = services.alerts_evaluate(now=evaluated_at)

    alert = Alert.objects.get()
    assert (alert.rule, alert.status, alert.severity) == (AlertRule.INSTANCE_UNHEALTHY, "resolved", "critical")
    assert (alert.opened_at, alert.resolved_at) == (down.created_at, up.created_at)
    assert alert.details["between_evaluations"] is True and "3 failed checks" in alert.message
    assert events(alert) == [("ops-log", "opened"), ("ops-log", "resolved")]
    assert summary["transitions"] == 2 and summary["flapped"] == 1
    assert StatusTransition.objects.filter(processed_at=evaluated_at).count() == 2

    # Consumed exactly once: the next evaluation neither sees them nor repeats the alert.
    summary = services.alerts_evaluate(now=evaluated_at + timedelta(seconds=30))
    assert summary["transitions"] == 0 and Alert.objects.count() == 1 and Notification.objects.count() == 2


def test_a_transition_into_unhealthy_opens_the_alert_at_the_time_it_happened(now):
    instance = make_instance()
    instance_set_status(instance=instance, status=InstanceStatus.UNHEALTHY, reason="auth failed (401)", source="health")
    down = StatusTransition.objects.get()

    services.alerts_evaluate(now=down.created_at + timedelta(seconds=20))

    alert = Alert.objects.get(rule=AlertRule.INSTANCE_UNHEALTHY)
    assert (alert.status, alert.opened_at) == ("open", down.created_at)

    instance_set_status(instance=instance, status=InstanceStatus.HEALTHY, reason="2 good checks", source="health")
    up = StatusTransition.objects.filter(processed_at__isnull=True).get()
    services.alerts_evaluate(now=up.created_at + timedelta(seconds=20))

    alert.refresh_from_db()
    assert (alert.status, alert.resolved_at) == ("resolved", up.created_at)


def test_a_failed_evaluation_gives_its_transitions_back(now, monkeypatch):
    instance = make_instance()
    instance_set_status(instance=instance, status=InstanceStatus.UNHEALTHY, reason="down", source="health")

    def explode(**kwargs):
        raise RuntimeError("rules crashed")

    monkeypatch.setattr("alerts.rules.evaluate_rules", explode)
    with pytest.raises(RuntimeError):
        services.alerts_evaluate(now=now)
    assert StatusTransition.objects.filter(processed_at__isnull=True).count() == 1

    monkeypatch.undo()
    assert services.alerts_evaluate(now=now)["transitions"] == 1


def test_an_acknowledged_alert_keeps_being_updated_and_resolves_by_itself(now, log_channel):
    instance = make_instance(status=InstanceStatus.UNHEALTHY)
    services.alerts_evaluate(now=now)
    alert = Alert.objects.get()
    services.alert_acknowledge(alert=alert, actor="admin:alice", now=now + timedelta(seconds=5))
    assert events(alert) == [("ops-log", "acknowledged"), ("ops-log", "opened")]

    services.alerts_evaluate(now=now + timedelta(seconds=30))
    alert.refresh_from_db()
    assert (alert.status, alert.last_seen_at, alert.acknowledged_by) == (
        "acknowledged",
        now + timedelta(seconds=30),
        "admin:alice",
    )

    instance.status = InstanceStatus.HEALTHY
    instance.save(update_fields=["status"])
    services.alerts_evaluate(now=now + timedelta(seconds=60))
    alert.refresh_from_db()
    assert alert.status == AlertStatus.RESOLVED
    assert ("ops-log", "resolved") in events(alert)


def test_deregistered_instances_have_their_alerts_resolved(now):
    instance = make_instance(status=InstanceStatus.UNHEALTHY)
    services.alerts_evaluate(now=now)
    instance.is_active = False
    instance.save(update_fields=["is_active"])

    services.alerts_evaluate(now=now + timedelta(seconds=30))

    assert Alert.objects.get().status == AlertStatus.RESOLVED


def test_the_database_allows_one_unresolved_alert_per_dedup_key(now):
    def alert(**fields):
        return Alert.objects.create(
            rule="instance_unhealthy",
            severity="critical",
            dedup_key="instance_unhealthy:instance:1",
            title="x",
            opened_at=now,
            last_seen_at=now,
            **fields,
        )

    alert(status=AlertStatus.RESOLVED, resolved_at=now)
    alert(status=AlertStatus.RESOLVED, resolved_at=now)
    alert()
    with pytest.raises(IntegrityError), transaction.atomic():
        alert(status=AlertStatus.ACKNOWLEDGED)


def test_evaluation_runs_a_fixed_number_of_queries_whatever_the_fleet_size(now, log_channel):
    def steady_state_queries(count: int) -> int:
        for _ in range(count):
            instance = make_instance(status=InstanceStatus.UNHEALTHY)
            add_check(instance, at=now - timedelta(minutes=1), response_time_ms=2500)
            add_requests(instance, at=now - timedelta(minutes=1), ok=10, errors=1)
        services.alerts_evaluate(now=now)  # opens them
        with CaptureQueriesContext(connection) as ctx:
            services.alerts_evaluate(now=now + timedelta(seconds=30))
        return len(ctx.captured_queries)

    small = steady_state_queries(2)
    large = steady_state_queries(20)

    # Unhealthy and error rate each; requests (p95 100 ms) outweigh the slow check.
    assert Alert.objects.filter(status="open").count() == 22 * 2
    assert small == large, (small, large)
    assert large <= 15, large


def test_rows_newer_than_the_clock_are_ignored(now):
    instance = make_instance()
    add_check(instance, at=now + timedelta(minutes=1), response_time_ms=9000)

    services.alerts_evaluate(now=now)

    assert not Alert.objects.exists()


def test_thresholds_fall_back_to_the_documented_defaults():
    thresholds = selectors.alert_thresholds()

    assert (thresholds.response_time_warning, thresholds.response_time_critical) == (2000, 5000)
    assert (thresholds.error_rate_warning, thresholds.error_rate_critical) == (5, 10)


def test_notification_rows_wait_for_commit_and_are_due_at_once(now, log_channel, django_capture_on_commit_callbacks):
    make_instance(status=InstanceStatus.UNHEALTHY)

    with django_capture_on_commit_callbacks() as callbacks:
        services.alerts_evaluate(now=now)

    notification = Notification.objects.get()
    assert (notification.status, notification.event, notification.next_attempt_at) == ("pending", "opened", now)
    assert len(callbacks) == 1  # one delivery task, queued after commit
    assert services.notifications_due(now=now) == [notification.pk]
