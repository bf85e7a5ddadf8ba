"""GET /api/instances/load-balancer/metrics, /utilization and /breakers, and the
breaker column and filter of the instance admin: traffic from RequestLog, live
state from the shared balancer store, in a bounded number of queries."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from gateway import selectors
from gateway.registry import registry_snapshot, reset_registry_snapshot
from instances.balancer.breaker import BreakerConfig, Outcome
from instances.balancer.state import Lease, get_state_store
from instances.models import AIInstance, RequestLog

pytestmark = pytest.mark.django_db

METRICS = "/api/instances/load-balancer/metrics"
UTILIZATION = "/api/instances/load-balancer/utilization"
BREAKERS = "/api/instances/load-balancer/breakers"
CONFIG = BreakerConfig()


def log(instance: AIInstance | None, *, status: str = "success", minutes_ago: float = 1, **fields: Any) -> RequestLog:
    return RequestLog.objects.create(
        request_id=uuid.uuid4().hex,
        instance=instance,
        provider_type=instance.provider_type if instance else "openai",
        model_name=instance.model_name if instance else "sim-model",
        status=status,
        created_at=timezone.now() - timedelta(minutes=minutes_ago),
        **fields,
    )


def lease(instance: AIInstance) -> Lease:
    """Take an in-flight lease on the instance, as the gateway does before calling it."""
    item = registry_snapshot(fresh=True).by_id[str(instance.instance_id)]
    admission = get_state_store().begin(
        item.candidate, pool=item.pool, now=time.time(), breaker=CONFIG, lease_seconds=60
    )
    assert admission.lease is not None, admission
    return admission.lease


def open_breaker(instance: AIInstance) -> None:
    """Five failed requests in a row: the breaker's consecutive-failure threshold."""
    for _ in range(CONFIG.failure_threshold):
        get_state_store().finish(lease(instance), outcome=Outcome.FAILURE, now=time.time(), breaker=CONFIG, pool_size=1)


# --- metrics -------------------------------------------------------------------------


def test_metrics_count_the_window_s_requests_with_rates_and_averages(api_client, fleet):
    a, b = fleet("a"), fleet("b")
    log(a, total_latency_ms=100, routing_ms=1.0)
    log(a, total_latency_ms=300, routing_ms=3.0)
    log(a, status="error", total_latency_ms=50, routing_ms=2.0)
    log(b, status="timeout", total_latency_ms=30_000)
    log(b, failover=True, original_instance=a, total_latency_ms=150, routing_ms=2.0)
    log(b, status="client_closed")
    log(a, minutes_ago=90, total_latency_ms=9999)  # outside the default 60-minute window

    response = api_client.get(METRICS)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["time_window_minutes"] == 60
    assert (body["total_requests"], body["successful_requests"], body["failed_requests"]) == (6, 3, 2)
    assert (body["failover_requests"], body["client_closed_requests"]) == (1, 1)
    assert (body["success_rate"], body["failure_rate"], body["failover_rate"]) == (0.5, 0.3333, 0.1667)
    assert body["requests_by_status"] == {
        "success": 3,
        "error": 1,
        "timeout": 1,
        "rate_limited": 0,
        "client_closed": 1,
    }
    assert body["average_routing_ms"] == 2.0
    assert body["average_total_latency_ms"] == pytest.approx((100 + 300 + 50 + 30_000 + 150) / 5, abs=0.001)
    rows = {row["instance_name"]: row for row in body["instances"]}
    assert (rows["a"]["activations"], rows["a"]["successes"], rows["a"]["failures"]) == (3, 2, 1)
    assert (rows["a"]["failed_over_from"], rows["a"]["failovers_in"]) == (1, 0)
    assert (rows["b"]["activations"], rows["b"]["failures"], rows["b"]["failovers_in"]) == (3, 1, 1)

    wider = api_client.get(METRICS, {"time_window_minutes": 120}).json()
    assert wider["total_requests"] == 7


def test_metrics_show_in_flight_utilisation_and_breakers_per_instance(api_client, fleet):
    busy = fleet("busy", max_concurrent_requests=4)
    broken = fleet("broken")
    fleet("idle")
    lease(busy)
    lease(busy)
    open_breaker(broken)

    body = api_client.get(METRICS).json()

    rows = {row["instance_name"]: row for row in body["instances"]}
    assert (rows["busy"]["in_flight"], rows["busy"]["utilization"]) == (2, 0.5)
    assert rows["broken"]["breaker"]["phase"] == "open"
    assert rows["broken"]["breaker"]["consecutive_failures"] == 0  # reset when it opened
    assert rows["broken"]["breaker"]["ejections"] == 1
    assert rows["broken"]["breaker"]["open_until"] is not None
    assert rows["broken"]["success_rate"] is None  # opening starts a fresh window
    assert rows["idle"]["breaker"] == {
        "phase": "closed",
        "consecutive_failures": 0,
        "ejections": 0,
        "open_until": None,
        "cooling_until": None,
        "window_calls": 0,
        "window_failures": 0,
    }
    assert body["breakers_by_phase"] == {"closed": 2, "open": 1, "half_open": 0}
    assert (body["total_in_flight"], body["total_capacity"]) == (2, 4 + 10 + 10)


def test_metrics_of_an_idle_fleet_have_no_rates(api_client, fleet):
    fleet("a")

    body = api_client.get(METRICS).json()

    assert body["total_requests"] == 0
    assert (body["success_rate"], body["average_routing_ms"], body["average_total_latency_ms"]) == (None, None, None)
    assert body["instances"][0]["activations"] == 0


def test_metrics_narrow_to_a_provider_and_model(api_client, fleet):
    a = fleet("a")
    other = fleet("other", model="other-model")
    log(a)
    log(other)

    body = api_client.get(METRICS, {"model_name": "other-model"}).json()

    assert body["total_requests"] == 1
    assert [row["instance_name"] for row in body["instances"]] == ["other"]


@pytest.mark.parametrize(
    "params",
    [
        {"time_window_minutes": 0},
        {"time_window_minutes": 10081},
        {"time_window_minutes": "an hour"},
        {"provider_type": "mistral"},
        {"window": 5},
    ],
)
def test_bad_query_parameters_are_400(api_client, params):
    assert api_client.get(METRICS, params).status_code == 400
    assert api_client.get(UTILIZATION, params).status_code == 400


def test_the_longest_window_is_a_week(api_client, fleet):
    a = fleet("a")
    log(a, minutes_ago=10079)

    assert api_client.get(METRICS, {"time_window_minutes": 10080}).json()["total_requests"] == 1


def test_metrics_run_a_fixed_number_of_queries_whatever_the_rows(api_client, fleet):
    def populate(names: list[str]) -> None:
        for name in names:
            instance = fleet(name)
            for n in range(5):
                log(instance, status="success" if n % 2 else "error", total_latency_ms=10.0 * n, routing_ms=1.0)

    populate(["a", "b"])
    api_client.get(METRICS)  # warm the registry snapshot and configuration caches
    with CaptureQueriesContext(connection) as few:
        assert api_client.get(METRICS).status_code == 200

    populate([f"n{i}" for i in range(20)])
    reset_registry_snapshot()
    api_client.get(METRICS)
    with CaptureQueriesContext(connection) as many:
        response = api_client.get(METRICS)

    assert len(response.json()["instances"]) == 22
    assert response.json()["total_requests"] == 110
    assert len(many) == len(few) <= 3, [q["sql"] for q in many.captured_queries]


# --- utilisation -------------------------------------------------------------------------


def test_utilization_reports_counts_and_latency_percentiles_per_instance(api_client, fleet):
    a, b = fleet("a"), fleet("b")
    fleet("idle")
    for latency in range(1, 101):  # 1..100 ms, shuffled in time
        log(a, total_latency_ms=float(latency), minutes_ago=(latency * 37 % 100) / 10)
    log(a, status="error", total_latency_ms=None)
    log(b, status="rate_limited", total_latency_ms=5.0)
    log(a, minutes_ago=120, total_latency_ms=10_000.0)  # outside the window

    response = api_client.get(UTILIZATION, {"time_window_minutes": 60})

    assert response.status_code == 200, response.content
    body = response.json()
    rows = {row["instance_name"]: row for row in body["instances"]}
    assert [row["instance_name"] for row in body["instances"]][:2] == ["a", "b"]  # busiest first
    # percentile_cont's linear interpolation, whichever way it was computed.
    assert (rows["a"]["p50_ms"], rows["a"]["p95_ms"], rows["a"]["p99_ms"]) == (50.5, 95.05, 99.01)
    assert (rows["a"]["requests"], rows["a"]["successes"], rows["a"]["failures"]) == (101, 100, 1)
    assert rows["a"]["latency_samples"] == 100
    assert rows["a"]["average_ms"] == 50.5
    assert (rows["b"]["requests"], rows["b"]["failures"], rows["b"]["failure_rate"]) == (1, 1, 1.0)
    assert rows["b"]["p99_ms"] == 5.0
    assert rows["idle"] == {
        **rows["idle"],
        "requests": 0,
        "p50_ms": None,
        "success_rate": None,
        "latency_samples": 0,
    }
    expected = "exact" if connection.vendor == "postgresql" else "sampled"
    assert body["percentiles"] == expected


def test_sampled_percentiles_use_each_instance_s_most_recent_latencies(fleet):
    a = fleet("a")
    for n in range(10):
        log(a, total_latency_ms=1000.0 + n, minutes_ago=30 + n)  # older: slow
    for n in range(5):
        log(a, total_latency_ms=float(n + 1), minutes_ago=n + 1)  # newest five: 1..5 ms

    report = selectors.lb_utilization(window_minutes=60, exact=False, sample_cap=5)

    (row,) = [row for row in report["instances"] if row["instance_name"] == "a"]
    assert (row["requests"], row["latency_samples"]) == (15, 5)
    assert (row["p50_ms"], row["p99_ms"]) == (3.0, 4.96)
    assert report["latency_sample_cap"] == 5


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [
        ([], 0.5, None),
        ([7.0], 0.99, 7.0),
        ([1.0, 2.0], 0.5, 1.5),
        ([1.0, 2.0, 3.0, 4.0], 0.95, 3.85),
        ([10.0, 20.0, 30.0], 0.0, 10.0),
        ([10.0, 20.0, 30.0], 1.0, 30.0),
    ],
)
def test_percentile_cont_interpolates_like_postgresql(values, fraction, expected):
    result = selectors.percentile_cont(values, fraction)
    assert result == (None if expected is None else pytest.approx(expected))


@pytest.mark.skipif(connection.vendor != "postgresql", reason="percentile_cont is PostgreSQL's")
def test_postgresql_and_python_percentiles_agree(fleet):
    a = fleet("a")
    for n in range(1, 40):
        log(a, total_latency_ms=float(n * n % 97), minutes_ago=n / 10)

    exact = selectors.lb_utilization(window_minutes=60, exact=True)["instances"][0]
    sampled = selectors.lb_utilization(window_minutes=60, exact=False)["instances"][0]

    assert {k: exact[k] for k in ("p50_ms", "p95_ms", "p99_ms")} == {
        k: sampled[k] for k in ("p50_ms", "p95_ms", "p99_ms")
    }


def test_utilization_runs_a_fixed_number_of_queries_whatever_the_rows(api_client, fleet):
    def populate(names: list[str]) -> None:
        for name in names:
            instance = fleet(name)
            for n in range(5):
                log(instance, total_latency_ms=float(n))

    populate(["a"])
    api_client.get(UTILIZATION)
    with CaptureQueriesContext(connection) as few:
        api_client.get(UTILIZATION)

    populate([f"n{i}" for i in range(15)])
    reset_registry_snapshot()
    api_client.get(UTILIZATION)
    with CaptureQueriesContext(connection) as many:
        response = api_client.get(UTILIZATION)

    assert len(response.json()["instances"]) == 16
    assert len(many) == len(few) <= 2


def test_a_read_only_key_may_read_the_metrics(read_only_client, fleet):
    fleet("a")
    for url in (METRICS, UTILIZATION, BREAKERS):
        assert read_only_client.get(url).status_code == 200, url


# --- breakers -------------------------------------------------------------------------------


def test_breakers_lists_every_instance_s_breaker_and_filters_by_phase(api_client, fleet):
    fleet("fine")
    broken = fleet("broken")
    open_breaker(broken)

    everything = api_client.get(BREAKERS).json()
    opened = api_client.get(BREAKERS, {"phase": "open"}).json()

    assert everything["count"] == 2
    assert everything["by_phase"] == {"closed": 1, "open": 1, "half_open": 0}
    assert [row["instance_name"] for row in opened["results"]] == ["broken"]
    assert opened["results"][0]["instance_id"] == str(broken.instance_id)
    assert opened["results"][0]["ejections"] == 1
    assert api_client.get(BREAKERS, {"phase": "ajar"}).status_code == 400


def test_an_open_breaker_past_its_time_reads_half_open(fleet):
    broken = fleet("broken")
    open_breaker(broken)
    state = get_state_store().breaker_states([str(broken.instance_id)])[str(broken.instance_id)]

    later = selectors.breaker_view(state, state.open_until + 1)

    assert (later["phase"], later["open_until"]) == ("half_open", None)


# --- the instance admin --------------------------------------------------------------------


@pytest.fixture
def operator(admin_user: Any) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def test_the_instance_admin_shows_each_row_s_breaker(operator, fleet):
    fleet("fine")
    broken = fleet("broken")
    open_breaker(broken)

    page = operator.get(reverse("admin:instances_aiinstance_changelist")).content.decode()

    assert 'class="ism-badge ism-badge--unhealthy">open</span>' in page
    assert "ejection 1" in page
    assert page.count('<td class="field-breaker_column">closed</td>') == 1


def test_the_open_breaker_filter_lists_only_instances_whose_breaker_is_not_closed(operator, fleet):
    fleet("fine")
    broken = fleet("broken")
    open_breaker(broken)
    url = reverse("admin:instances_aiinstance_changelist")

    response = operator.get(url, {"breaker": "open"})

    assert [row.instance_name for row in response.context["cl"].result_list] == ["broken"]
    assert "Open or half-open" in response.content.decode()
    assert operator.get(url).context["cl"].result_count == 2


def test_the_breaker_column_adds_no_query_per_row(operator, fleet):
    url = reverse("admin:instances_aiinstance_changelist")
    fleet("a")
    operator.get(url)
    with CaptureQueriesContext(connection) as few:
        operator.get(url)

    for n in range(12):
        fleet(f"n{n}")
    with CaptureQueriesContext(connection) as many:
        response = operator.get(url)

    assert response.context["cl"].result_count == 13
    assert len(many) == len(few)
