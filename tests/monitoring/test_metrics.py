"""The domain metrics: names, labels and values computed from the rows, at a bounded cost."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from instances.balancer import breaker as brk
from instances.balancer.state import get_state_store
from instances.choices import CheckStatus, CheckType, InstanceStatus, RequestStatus
from monitoring import metrics, services
from monitoring.metrics import DomainCollector, compute_samples
from scaling.models import ScalingEvent
from tests.monitoring.conftest import add_check, add_request, make_group, make_instance

pytestmark = pytest.mark.django_db


def scrape(client) -> dict[tuple[str, frozenset], float]:
    metrics.collector().invalidate()
    response = client.get("/metrics")
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_the_scrape_reports_requests_tokens_failovers_and_latency_from_the_rows(client, pricing):
    now = timezone.now()
    first = make_instance()
    second = make_instance()
    add_request(first, at=now, latency_ms=80.0, prompt=1000, completion=2000)
    add_request(first, at=now, latency_ms=300.0)
    add_request(first, at=now, status=RequestStatus.ERROR, latency_ms=None)
    add_request(second, at=now, latency_ms=2000.0, failover=True, original=first)

    samples = scrape(client)

    base = {"provider_type": "openai", "model_name": "gpt-4o"}
    assert (
        value(samples, "instance_manager_requests_total", **base, instance_id=str(first.instance_id), status="success")
        == 2
    )
    assert (
        value(samples, "instance_manager_requests_total", **base, instance_id=str(first.instance_id), status="error")
        == 1
    )
    assert value(samples, "instance_manager_selections_total", **base, instance_id=str(second.instance_id)) == 1
    assert value(samples, "instance_manager_failovers_total", **base, from_instance_id=str(first.instance_id)) == 1
    assert (
        value(samples, "instance_manager_tokens_total", **base, instance_id=str(first.instance_id), kind="prompt")
        == 1000
    )
    # 1000 prompt * 0.005/1k + 2000 completion * 0.015/1k
    assert value(samples, "instance_manager_estimated_cost_total", **base) == pytest.approx(0.035)
    assert value(samples, "instance_manager_request_duration_seconds_bucket", **base, le="0.1") == 1
    assert value(samples, "instance_manager_request_duration_seconds_bucket", **base, le="0.5") == 2
    assert value(samples, "instance_manager_request_duration_seconds_bucket", **base, le="2.5") == 3
    assert value(samples, "instance_manager_request_duration_seconds_bucket", **base, le="+Inf") == 3
    assert value(samples, "instance_manager_request_duration_seconds_count", **base) == 3
    assert value(samples, "instance_manager_request_duration_seconds_sum", **base) == pytest.approx(2.38)


def test_the_scrape_reports_instances_health_checks_breakers_and_groups(client):
    now = timezone.now()
    group = make_group()
    healthy = make_instance(group=group, health_score=0.9, current_load=5, max_concurrent_requests=10)
    sick = make_instance(status=InstanceStatus.UNHEALTHY, group=group, health_score=0.1)
    make_instance(status=InstanceStatus.HEALTHY, is_active=False, instance_name="gone")
    add_check(healthy, at=now)
    add_check(sick, at=now, status=CheckStatus.UNHEALTHY, check_type=CheckType.LATENCY)
    ScalingEvent.objects.create(
        group=group, direction="up", trigger="utilization", reason="busy", old_count=1, new_count=2, status="completed"
    )
    ScalingEvent.objects.create(  # a cooldown's record, not an action: its own series
        group=group, direction="up", trigger="utilization", reason="held", old_count=2, new_count=3, status="skipped"
    )
    store = get_state_store()
    store._put(
        store._key("brk", str(sick.instance_id)),
        json.dumps(brk.BreakerState(phase=brk.Phase.OPEN, open_until=9e12).as_dict()),
        ttl=60,
    )

    samples = scrape(client)

    assert value(samples, "instance_manager_instances_total", provider_type="openai", status="healthy") == 1
    assert value(samples, "instance_manager_instances_total", provider_type="openai", status="unhealthy") == 1
    assert value(samples, "instance_manager_health_checks_total", check_type="basic", status="healthy") == 1
    assert value(samples, "instance_manager_health_checks_total", check_type="latency", status="unhealthy") == 1
    for status in ("acted", "skipped"):
        events = value(
            samples, "instance_manager_scaling_events_total", provider_type="openai", direction="up",
            reason="utilization", status=status,
        )  # fmt: skip
        assert events == 1, status
    labels = {
        "instance_id": str(healthy.instance_id),
        "instance_name": healthy.instance_name,
        "provider_type": "openai",
        "model_name": "gpt-4o",
    }
    sick_labels = {**labels, "instance_id": str(sick.instance_id), "instance_name": sick.instance_name}
    assert value(samples, "instance_manager_instance_health_score", **labels) == 0.9
    assert value(samples, "instance_manager_instance_load_ratio", **labels) == 0.5
    assert value(samples, "instance_manager_instance_in_flight_requests", **labels) == 5
    assert value(samples, "instance_manager_instance_up", **labels) == 1
    assert value(samples, "instance_manager_instance_up", **sick_labels) == 0
    assert value(samples, "instance_manager_instance_status", **sick_labels, status="unhealthy") == 1
    assert value(samples, "instance_manager_breaker_state", **labels) == 0
    assert value(samples, "instance_manager_breaker_state", **sick_labels) == 2
    group_labels = {"group": group.group_name, "provider_type": "openai"}
    assert value(samples, "instance_manager_group_instances", **group_labels) == 2
    assert value(samples, "instance_manager_group_healthy_instances", **group_labels) == 1
    assert value(samples, "instance_manager_scrape_error") == 0


def test_counters_do_not_go_down_when_retention_deletes_rows(client):
    old = timezone.now() - timedelta(days=40)
    instance = make_instance()
    for _ in range(3):
        add_request(instance, at=old, latency_ms=50.0)
    add_request(instance, at=timezone.now(), latency_ms=50.0)
    add_check(instance, at=old)
    before = scrape(client)

    deleted = services.retention_enforce(days_to_keep=30)

    assert deleted["request_logs"] == 3 and deleted["health_checks"] == 1
    after = scrape(client)
    compared = {k: v for k, v in before.items() if k[0].startswith("instance_manager_") and "_total" in k[0]}
    compared |= {k: v for k, v in before.items() if k[0].startswith("instance_manager_request_duration")}
    assert {key: after.get(key) for key in compared} == compared
    labels = {"provider_type": "openai", "model_name": "gpt-4o", "instance_id": str(instance.instance_id)}
    assert value(after, "instance_manager_requests_total", **labels, status="success") == 4


def test_a_scrape_costs_the_same_number_of_queries_whatever_the_number_of_rows(client):
    def queries() -> int:
        collector = DomainCollector(ttl=0)
        with CaptureQueriesContext(connection) as captured:
            list(collector.collect())
        return len(captured)

    group = make_group()
    instance = make_instance(group=group)
    add_request(instance, at=timezone.now())
    queries()  # the configuration (prices) is read once, then cached in the process
    small = queries()
    now = timezone.now()
    for _ in range(30):
        extra = make_instance(group=make_group())
        add_request(extra, at=now, failover=True, original=instance, prompt=10)
        add_check(extra, at=now)
    large = queries()

    assert large == small
    assert large <= metrics.SCRAPE_QUERY_BOUND


def test_the_scrape_result_is_cached_for_a_few_seconds():
    calls = []
    clock = [100.0]

    def compute():
        calls.append(1)
        return {}

    collector = DomainCollector(ttl=5, clock=lambda: clock[0], compute=compute)
    list(collector.collect())
    clock[0] += 4
    list(collector.collect())
    assert len(calls) == 1
    clock[0] += 2
    list(collector.collect())
    assert len(calls) == 2


def test_a_failing_computation_reports_a_scrape_error_instead_of_breaking_metrics():
    def compute():
        raise RuntimeError("database down")

    collector = DomainCollector(ttl=0, compute=compute)
    families = {f.name: f for f in collector.collect()}
    assert families["instance_manager_scrape_error"].samples[0].value == 1


def test_the_collector_is_registered_once_on_the_default_registry():
    text = generate_latest(REGISTRY).decode()
    assert text.count("# TYPE instance_manager_requests_total counter") == 1
    assert metrics.register_collector() is metrics.register_collector()


def test_compute_samples_runs_with_an_empty_database():
    assert isinstance(compute_samples(), dict)


def test_the_metrics_port_serves_the_registry():
    import socket
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = metrics._serve("127.0.0.1", port)
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert "instance_manager_requests_total" in body
