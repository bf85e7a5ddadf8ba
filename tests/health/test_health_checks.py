"""Health checks against the simulated provider over loopback: the four types,
status thresholds, the API and the sweep."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from instances.choices import InstanceStatus
from instances.health.checks import CheckResult
from instances.health.services import health_check_instance, health_record, health_sweep
from instances.health.status import Thresholds
from instances.models import AIInstance, HealthCheck, StatusTransition

pytestmark = pytest.mark.django_db


def check(instance, check_type="basic"):
    return health_check_instance(instance=instance, check_type=check_type)


@pytest.mark.parametrize("provider", ["openai", "zai", "anthropic", "perplexity", "openai_compatible"])
def test_a_basic_check_reaches_every_provider_shape(make_instance, sim_server, provider):
    instance = make_instance(f"basic-{provider}", provider=provider, model="sim-model")

    result = check(instance)

    assert (result.status, result.score, result.check_type) == ("healthy", 1.0, "basic")
    assert result.response_time_ms is not None
    stats = sim_server.stats(f"basic-{provider}")
    assert stats["total"] == 1


def test_basic_uses_the_models_listing_not_a_billed_completion(make_instance, sim_server):
    instance = make_instance("listing")

    check(instance)

    assert set(sim_server.stats("listing")["by_endpoint"]) == {"models"}


def test_a_bad_key_is_unhealthy_at_once(make_instance, sim_server):
    sim_server.configure("badkey", required_api_key="the-right-key")
    instance = make_instance("badkey")

    result = check(instance)

    instance.refresh_from_db()
    assert (result.status, result.error_kind) == ("unhealthy", "auth")
    assert instance.status == InstanceStatus.UNHEALTHY
    transition = StatusTransition.objects.get(instance=instance)
    assert "authentication failed" in transition.reason


def test_status_moves_only_after_the_thresholds(make_instance, sim_server):
    instance = make_instance("flappy")

    check(instance)
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.STARTING
    check(instance)
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.HEALTHY

    sim_server.configure("flappy", failure_rate=1.0, failure_status=503)
    for expected in (InstanceStatus.HEALTHY, InstanceStatus.HEALTHY, InstanceStatus.UNHEALTHY):
        result = check(instance)
        instance.refresh_from_db()
        assert result.status == "unhealthy"
        assert instance.status == expected
    assert list(StatusTransition.objects.filter(instance=instance).values_list("old_status", "new_status")) == [
        ("healthy", "unhealthy"),
        ("starting", "healthy"),
    ]


@pytest.mark.parametrize("provider", ["openai", "openai_compatible"])
def test_a_provider_failing_every_call_goes_unhealthy_at_the_threshold_whatever_checks_run(
    make_instance, sim_server, provider
):
    """basic, basic, load: three failures in a row (threshold 3); the load check must not pass on
    registry figures alone (hosted APIs publish no metrics) and reset the streak."""
    instance = make_instance("all-500", provider=provider)
    check(instance)
    check(instance)
    sim_server.configure("all-500", failure_rate=1.0, failure_status=500)

    seen = []
    for check_type in ("basic", "basic", "load", "basic"):
        result = check(instance, check_type)
        instance.refresh_from_db()
        seen.append((check_type, result.status, instance.status))

    assert seen == [
        ("basic", "unhealthy", "healthy"),
        ("basic", "unhealthy", "healthy"),
        ("load", "unhealthy", "unhealthy"),
        ("basic", "unhealthy", "unhealthy"),
    ]
    assert instance.consecutive_failures == 4


def test_the_load_check_asks_the_api_before_judging_load(make_instance, sim_server):
    result = check(make_instance("load-probe"), "load")

    assert (result.status, result.details["utilization"]) == ("healthy", 0.0)
    assert sim_server.stats("load-probe")["by_endpoint"] == {"models": 1}


def test_a_trickling_provider_fails_its_check_at_the_deadline(make_instance, sim_server):
    sim_server.configure("trickler", trickle_ms=200)  # every read answers within the 1 s timeout
    instance = make_instance("trickler", timeout=1.0)

    started = time.monotonic()
    result = check(instance)
    elapsed = time.monotonic() - started

    assert (result.status, result.error_kind) == ("unhealthy", "timeout")
    assert "1 s deadline" in result.issues[0]
    assert 1.0 <= elapsed < 2.5
    assert 1000 <= result.response_time_ms < 2500


def test_a_late_result_never_overwrites_a_newer_one(make_instance):
    instance = make_instance("late")
    newer, older = timezone.now(), timezone.now() - timedelta(seconds=30)
    thresholds = Thresholds(healthy_threshold=1, unhealthy_threshold=1)
    health_record(
        instance_id=instance.pk,
        result=CheckResult("basic", "healthy", 1.0, 5.0, api_exercised=True),
        thresholds=thresholds,
        started_at=newer,
    )

    late = health_record(
        instance_id=instance.pk,
        result=CheckResult("basic", "unhealthy", 0.0, None, ["connection refused"], error_kind="connection"),
        thresholds=thresholds,
        started_at=older,
    )

    instance.refresh_from_db()
    assert late == (None, None)
    assert (instance.status, instance.last_health_check_at, instance.consecutive_failures) == ("healthy", newer, 0)
    assert list(HealthCheck.objects.values_list("status", flat=True)) == ["healthy"]


def test_a_sweep_started_before_the_latest_check_does_not_apply_its_results(make_instance, sim_server):
    instance = make_instance("overtaken")
    check(instance)  # recorded now
    sim_server.configure("overtaken", failure_rate=1.0, failure_status=500)

    report = health_sweep(now=timezone.now() - timedelta(minutes=1), check_types=["basic"], force=True)

    instance.refresh_from_db()
    assert (instance.consecutive_successes, instance.consecutive_failures) == (1, 0)
    assert HealthCheck.objects.filter(instance=instance).count() == 1
    assert (report.claimed, report.checks, report.stale) == (1, 0, 1)


@pytest.mark.parametrize(
    ("behaviour", "kind"),
    [
        ({"failure_rate": 1.0, "failure_status": 500}, "server_error"),
        ({"latency_ms": 3000}, "timeout"),
        ({"failure_rate": 1.0, "failure_status": 429, "retry_after": 7}, "rate_limited"),
    ],
)
def test_errors_are_classified(make_instance, sim_server, behaviour, kind):
    sim_server.configure("broken", **behaviour)
    instance = make_instance("broken", timeout=0.5)

    result = check(instance)

    assert result.error_kind == kind
    assert result.issues


def test_a_refused_connection_is_unhealthy(db):
    from instances.services import instance_register

    instance = instance_register(
        provider_type="openai_compatible",
        model_name="m",
        instance_name="nowhere",
        endpoint_url="http://127.0.0.1:9/v1",
    )

    result = check(instance)

    assert (result.status, result.error_kind) == ("unhealthy", "connection")


def test_latency_check_scores_against_the_configured_thresholds(make_instance, sim_server):
    sim_server.configure("slowish", latency_ms=300)
    fast = check(make_instance("fast"), "latency")
    slow = check(make_instance("slowish"), "latency")

    assert fast.status == "healthy"
    assert len(fast.details["samples_ms"]) == 3
    assert slow.response_time_ms >= 300
    assert slow.score < fast.score


def test_latency_over_the_warning_threshold_is_degraded(make_instance, sim_server, settings):
    from configuration.services import config_update

    config_update(
        changes={"monitoring": {"alert_thresholds": {"response_time_warning": 100, "response_time_critical": 1000}}},
        updated_by="test",
    )
    sim_server.configure("slow", latency_ms=250)

    result = check(make_instance("slow"), "latency")

    assert result.status == "degraded"
    assert 0.2 <= result.score <= 0.7
    assert "over the 100 ms warning" in result.issues[0]


def test_load_check_reads_utilisation_and_the_vllm_queue(make_instance, sim_server):
    sim_server.configure("vllm", vllm_waiting=25, vllm_running=8, vllm_kv_cache_usage=0.97)
    instance = make_instance("vllm", provider="openai_compatible", max_concurrent_requests=10)
    instance.current_load = 9
    instance.save()

    result = check(instance, "load")

    assert result.status == "degraded"
    assert result.details["num_requests_waiting"] == 25
    assert result.details["utilization"] == 0.9
    assert result.score < 0.1
    assert any("waiting" in issue for issue in result.issues)
    assert any("KV cache" in issue for issue in result.issues)


def test_comprehensive_check_makes_a_real_minimal_completion(make_instance, sim_server):
    result = check(make_instance("full"), "comprehensive")

    assert result.status == "healthy"
    assert result.details["completion_tokens"] >= 1
    assert "chat" in "".join(sim_server.stats("full")["by_endpoint"])


def test_a_reasoning_model_spending_its_budget_thinking_is_healthy(make_instance, sim_server):
    sim_server.configure("thinker", reasoning_tokens=50)

    result = check(make_instance("thinker"), "comprehensive")

    assert result.status == "healthy"
    assert any("reasoning" in issue for issue in result.issues)


def test_anthropic_comprehensive_check_speaks_the_messages_api(make_instance, sim_server):
    result = check(make_instance("claude", provider="anthropic"), "comprehensive")

    assert result.status == "healthy"
    assert "messages" in "".join(sim_server.stats("claude")["by_endpoint"])


# --- API ---------------------------------------------------------------------------


def test_the_health_check_endpoint_answers_the_seeds_shape(api_client, make_instance):
    instance = make_instance("api")

    response = api_client.post(f"/api/instances/{instance.instance_id}/health-check?check_type=basic")

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) >= {"instance_id", "check_type", "status", "score", "response_time_ms", "issues", "checked_at"}
    assert (body["instance_id"], body["status"]) == (str(instance.instance_id), "healthy")
    assert HealthCheck.objects.count() == 1


def test_health_check_defaults_to_basic_and_rejects_unknown_types(api_client, make_instance):
    instance = make_instance("api2")

    assert api_client.post(f"/api/instances/{instance.instance_id}/health-check").json()["check_type"] == "basic"
    assert api_client.post(f"/api/instances/{instance.instance_id}/health-check?check_type=deep").status_code == 400
    assert api_client.post(f"/api/instances/{uuid.uuid4()}/health-check").status_code == 404
    assert HealthCheck.objects.count() == 1


def test_health_and_history_endpoints(api_client, make_instance):
    instance = make_instance("hist")
    for _ in range(3):
        check(instance)

    health = api_client.get(f"/api/instances/{instance.instance_id}/health").json()
    history = api_client.get(f"/api/instances/{instance.instance_id}/health/history?limit=2").json()

    assert health["status"] == "healthy"
    assert health["score"] == 1.0
    assert health["last_check"] is not None
    assert len(history) == 2
    assert api_client.get(f"/api/instances/{instance.instance_id}/health/history?limit=0").status_code == 400


def test_health_summary_with_an_empty_registry(api_client):
    body = api_client.get("/api/instances/health-summary").json()

    assert body["total_instances"] == 0
    assert body["overall_health_percentage"] == 0.0
    assert body["average_response_time"] is None
    assert body["instances"] == []


def test_health_summary_counts_and_reports_each_instance(api_client, make_instance, sim_server):
    good = make_instance("good")
    make_instance("never-checked")
    sim_server.configure("bad", required_api_key="other")
    bad = make_instance("bad")
    check(good)
    check(good)
    check(bad)

    with CaptureQueriesContext(connection) as queries:
        body = api_client.get("/api/instances/health-summary").json()

    assert (body["total_instances"], body["healthy_instances"], body["unhealthy_instances"]) == (3, 1, 1)
    assert body["overall_health_percentage"] == pytest.approx(33.33)
    assert body["average_response_time"] is not None
    assert len(body["instances"]) == 3
    assert len(queries) <= 3


# --- Sweeps ------------------------------------------------------------------------


def test_a_sweep_checks_due_instances_and_schedules_the_next(make_instance):
    first = make_instance("s1")
    make_instance("s2")
    parked = make_instance("s3")
    parked.status = InstanceStatus.MAINTENANCE
    parked.save()

    report = health_sweep()

    assert (report.claimed, report.checks) == (2, 2)
    first.refresh_from_db()
    assert first.next_health_check_at > timezone.now() + timedelta(seconds=25)
    assert first.health_claim_token is None
    assert health_sweep().due == 0  # nothing is due again before its interval
    late = make_instance("registered-later")
    assert health_sweep().claimed == 1
    late.refresh_from_db()
    assert late.last_health_check_at is not None


def test_an_instance_claimed_by_another_worker_is_not_checked_twice(make_instance):
    instance = make_instance("claimed")
    AIInstance.objects.filter(pk=instance.pk).update(
        health_claim_token=uuid.uuid4(), health_check_claimed_until=timezone.now() + timedelta(seconds=60)
    )

    report = health_sweep()

    assert (report.due, report.claimed, report.checks) == (1, 0, 0)


def test_the_check_health_command_prints_results(make_instance, capsys):
    make_instance("cmd")

    call_command("check_health", "--type", "basic", "--type", "latency")

    out = capsys.readouterr().out
    assert "cmd" in out
    assert "2 checks of 1 instances" in out


def test_a_sweep_claims_each_instance_for_its_checks_deadlines(make_instance):
    from instances.health.services import CLAIM_MARGIN_SECONDS, _claim_seconds, _context

    instance = make_instance("deadlines", timeout=4.0)

    assert _claim_seconds(instance, ["basic"], _context(instance)) == 4.0 + CLAIM_MARGIN_SECONDS
    assert _claim_seconds(instance, ["basic", "load", "latency"], _context(instance)) == 4.0 * 6 + CLAIM_MARGIN_SECONDS


def test_a_sweep_costs_the_same_queries_per_instance_whatever_the_fleet_size(make_instance):
    def sweep_queries(count: int, prefix: str) -> int:
        for index in range(count):
            make_instance(f"{prefix}-{index}")
        with CaptureQueriesContext(connection) as queries:
            report = health_sweep(check_types=["basic"], instance_ids=None)
        assert report.checks == count
        return len(queries)

    small, large = sweep_queries(2, "small"), sweep_queries(6, "large")

    per_instance = (large - small) / 4
    assert per_instance <= 10, (small, large)  # read, claim, store (locked read, insert, update), release
    assert small - 2 * per_instance <= 6, (small, large)
