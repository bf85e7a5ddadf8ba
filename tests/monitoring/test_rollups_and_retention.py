"""Per-minute rollups (correct, idempotent, resumable) and retention (batched, on demand)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from alerts.models import Alert
from instances.choices import RequestStatus
from instances.models import HealthCheck, InstanceMetrics, RequestLog, StatusTransition
from monitoring import services
from monitoring.rollups import nearest_rank
from tests.monitoring.conftest import add_check, add_request, make_instance

pytestmark = pytest.mark.django_db

MINUTE = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def test_nearest_rank_matches_the_alert_rules_definition():
    values = [float(v) for v in range(1, 101)]
    assert nearest_rank(values, 0.95) == 95.0
    assert nearest_rank(values, 0.5) == 50.0
    assert nearest_rank([7.0], 0.99) == 7.0
    assert nearest_rank([], 0.5) is None


def test_a_closed_minute_is_rolled_up_with_counts_percentiles_tokens_and_cost(pricing):
    instance = make_instance()
    for ms in range(10, 210, 10):  # 20 successes: 10..200 ms
        add_request(instance, at=MINUTE + timedelta(seconds=1), latency_ms=float(ms), prompt=100, completion=50)
    add_request(instance, at=MINUTE + timedelta(seconds=30), status=RequestStatus.ERROR, latency_ms=None)
    add_request(instance, at=MINUTE + timedelta(seconds=59), status=RequestStatus.TIMEOUT, latency_ms=None)
    add_request(instance, at=MINUTE + timedelta(minutes=1, seconds=5))  # the open minute

    written = services.metrics_rollup(now=MINUTE + timedelta(minutes=1, seconds=30))

    assert written == 1
    row = InstanceMetrics.objects.get(instance=instance)
    assert row.bucket_start == MINUTE
    assert (row.request_count, row.success_count, row.failure_count, row.timeout_count) == (22, 20, 1, 1)
    assert (row.p50_response_ms, row.p95_response_ms, row.p99_response_ms) == (100.0, 190.0, 200.0)
    assert row.avg_response_ms == pytest.approx(105.0)
    assert (row.prompt_tokens, row.completion_tokens) == (2000, 1000)
    assert row.error_rate == pytest.approx(2 / 22)
    # 2000/1000 * 0.005 + 1000/1000 * 0.015
    assert row.estimated_cost == Decimal("0.025000")


def test_running_the_rollup_again_does_not_double_count_and_picks_up_late_rows():
    instance = make_instance()
    other = make_instance()
    add_request(instance, at=MINUTE)
    add_request(other, at=MINUTE + timedelta(minutes=1))
    later = MINUTE + timedelta(minutes=3)

    services.metrics_rollup(now=later)
    services.metrics_rollup(now=later)
    assert InstanceMetrics.objects.count() == 2
    assert InstanceMetrics.objects.get(instance=instance).request_count == 1

    add_request(instance, at=MINUTE + timedelta(seconds=10))  # logged late into a rolled minute
    services.metrics_rollup(now=later + timedelta(minutes=1))
    assert InstanceMetrics.objects.get(instance=instance, bucket_start=MINUTE).request_count == 2
    assert InstanceMetrics.objects.count() == 2


def test_a_long_backlog_is_rolled_up_over_several_runs():
    instance = make_instance()
    for hour in range(3):
        add_request(instance, at=MINUTE + timedelta(hours=hour))
    now = MINUTE + timedelta(hours=3)

    services.metrics_rollup(now=now, max_minutes=30)
    assert InstanceMetrics.objects.filter(instance=instance).count() == 1  # one chunk per run
    for _ in range(3):
        services.metrics_rollup(now=now, max_minutes=30)
    assert InstanceMetrics.objects.filter(instance=instance).count() == 3
    assert all(row.request_count == 1 for row in InstanceMetrics.objects.all())


def test_retention_deletes_old_rows_in_batches_and_keeps_recent_and_open_ones():
    now = datetime(2030, 6, 1, tzinfo=UTC)
    old, recent = now - timedelta(days=31), now - timedelta(days=29)
    instance = make_instance()
    for _ in range(5):
        add_request(instance, at=old)
    add_request(instance, at=recent)
    add_check(instance, at=old)
    add_check(instance, at=recent)
    InstanceMetrics.objects.create(instance=instance, bucket_start=old)
    InstanceMetrics.objects.create(instance=instance, bucket_start=recent)
    processed = StatusTransition.objects.create(
        instance=instance, old_status="healthy", new_status="unhealthy", reason="x", source="test", processed_at=old
    )
    unprocessed = StatusTransition.objects.create(
        instance=instance, old_status="unhealthy", new_status="healthy", reason="y", source="test"
    )
    StatusTransition.objects.filter(pk__in=[processed.pk, unprocessed.pk]).update(created_at=old)
    common = {"rule": "error_rate", "severity": "warning", "title": "t", "opened_at": old, "last_seen_at": old}
    Alert.objects.create(dedup_key="a", status="resolved", resolved_at=old, **common)
    Alert.objects.create(dedup_key="b", status="open", **common)

    result = services.retention_enforce(days_to_keep=30, now=now, batch_size=2)

    assert result["request_logs"] == 5 and result["health_checks"] == 1
    assert result["instance_metrics"] == 1 and result["status_transitions"] == 1 and result["alerts"] == 1
    assert RequestLog.objects.count() == 1 and HealthCheck.objects.count() == 1
    assert InstanceMetrics.objects.get().bucket_start == recent
    assert list(StatusTransition.objects.values_list("pk", flat=True)) == [unprocessed.pk]
    assert list(Alert.objects.values_list("dedup_key", flat=True)) == ["b"]


def test_retention_defaults_to_the_configured_days():
    instance = make_instance()
    add_request(instance, at=datetime.now(UTC) - timedelta(days=31))
    add_request(instance, at=datetime.now(UTC) - timedelta(days=29))
    result = services.retention_enforce()
    assert result["days_to_keep"] == 30 and result["request_logs"] == 1


class TestCleanupApi:
    def test_it_deletes_rows_older_than_days_to_keep(self, api_client):
        instance = make_instance()
        add_request(instance, at=datetime.now(UTC) - timedelta(days=8))
        add_request(instance, at=datetime.now(UTC) - timedelta(days=6))

        response = api_client.post("/api/instances/cleanup?days_to_keep=7")

        assert response.status_code == 200, response.content
        assert response.json()["request_logs"] == 1 and response.json()["days_to_keep"] == 7
        assert RequestLog.objects.count() == 1

    @pytest.mark.parametrize("days", ["0", "-1", "abc", "3651", "1.5", ""])
    def test_bad_values_are_400(self, api_client, days):
        response = api_client.post(f"/api/instances/cleanup?days_to_keep={days}")
        assert response.status_code == 400
        assert "days_to_keep" in response.json()

    def test_unknown_parameters_are_400(self, api_client):
        assert api_client.post("/api/instances/cleanup?days=3").status_code == 400

    def test_a_read_only_key_is_refused(self, read_only_client):
        instance = make_instance()
        add_request(instance, at=datetime.now(UTC) - timedelta(days=90))
        assert read_only_client.post("/api/instances/cleanup?days_to_keep=1").status_code == 403
        assert RequestLog.objects.count() == 1

    def test_without_a_key_it_is_401(self, anon_client):
        assert anon_client.post("/api/instances/cleanup?days_to_keep=1").status_code == 401

    def test_it_is_409_while_the_periodic_retention_runs(self, api_client):
        from ishchat.locks import lease
        from monitoring.tasks import RETENTION_LEASE

        with lease(RETENTION_LEASE, ttl_seconds=60) as held:
            assert held
            assert api_client.post("/api/instances/cleanup?days_to_keep=7").status_code == 409

    def test_it_is_not_taken_for_an_instance_id(self, api_client):
        assert api_client.get("/api/instances/cleanup").status_code == 405


def test_the_periodic_tasks_run_their_services():
    from monitoring import tasks

    instance = make_instance()
    add_request(instance, at=datetime.now(UTC) - timedelta(minutes=5))
    assert tasks.metrics_rollup.delay().get() == 1
    assert tasks.retention_enforce.delay().get()["request_logs"] == 0
    assert tasks.performance_report_daily.delay().get() > 0


def test_the_periodic_tasks_are_in_the_default_list():
    from ishchat.periodic import DEFAULT_TASKS

    names = {task.task for task in DEFAULT_TASKS}
    assert {"monitoring.metrics_rollup", "monitoring.retention_enforce", "monitoring.performance_report_daily"} <= names
