"""Performance reports on a small known dataset; the command's formats; the reports API; request ids."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from alerts.models import Alert
from instances.choices import CheckStatus, RequestStatus
from monitoring import services
from monitoring.models import PerformanceReport
from scaling.models import ScalingEvent
from tests.monitoring.conftest import add_check, add_request, make_group, make_instance

pytestmark = pytest.mark.django_db

END = datetime(2030, 3, 2, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.fixture
def dataset(pricing):
    """Current window (last 24 h): 10 requests on `a` (8 ok 100..800 ms, 1 error, 1 timeout), 2 ok on `b`;
    3 checks on `a` (2 healthy), 1 alert on `a`, 1 scale-up. Previous window: 5 ok requests on `a`."""
    a = make_instance(instance_name="a")
    b = make_instance(instance_name="b", provider_type="anthropic", model_name="claude")
    at = END - 2 * HOUR
    for ms in range(100, 900, 100):
        add_request(a, at=at, latency_ms=float(ms), prompt=1000, completion=1000)
    add_request(a, at=at, status=RequestStatus.ERROR, latency_ms=None)
    add_request(a, at=at, status=RequestStatus.TIMEOUT, latency_ms=None)
    add_request(b, at=at, latency_ms=50.0)
    add_request(b, at=at, latency_ms=70.0)
    for status in (CheckStatus.HEALTHY, CheckStatus.HEALTHY, CheckStatus.UNHEALTHY):
        add_check(a, at=at, status=status)
    Alert.objects.create(
        rule="error_rate", severity="warning", title="t", dedup_key="k", instance=a, opened_at=at, last_seen_at=at
    )
    group = make_group()
    event = ScalingEvent.objects.create(
        group=group, direction="up", trigger="utilization", reason="busy", old_count=1, new_count=2, status="completed"
    )
    ScalingEvent.objects.filter(pk=event.pk).update(created_at=at)
    for _ in range(5):
        add_request(a, at=END - 30 * HOUR, latency_ms=100.0)
    add_request(a, at=END - 50 * HOUR)  # before both windows
    return a, b


def test_the_report_has_the_numbers_of_the_window_and_the_trend(dataset):
    body = services.report_build(end=END)

    totals = body["totals"]
    assert totals["requests"] == 12 and totals["successes"] == 10
    assert totals["success_rate"] == pytest.approx(10 / 12)
    assert totals["trend"]["requests_change"] == pytest.approx(12 / 5 - 1)
    openai = next(p for p in body["providers"] if p["provider_type"] == "openai")
    assert openai["requests"] == 10 and openai["failures"] == 1 and openai["timeouts"] == 1
    assert openai["scaling_events"] == {"up": 1, "down": 0, "none": 0}
    assert openai["incidents"] == 1
    a = next(i for i in body["instances"] if i["instance_name"] == "a")
    assert (a["p50_ms"], a["p95_ms"], a["p99_ms"]) == (400.0, 800.0, 800.0)
    assert (a["prompt_tokens"], a["completion_tokens"]) == (8000, 8000)
    assert a["estimated_cost"] == pytest.approx(8 * 0.005 + 8 * 0.015)
    assert a["uptime"] == pytest.approx(2 / 3)
    assert a["incidents"] == 1
    assert a["trend"]["previous"]["requests"] == 5
    assert a["trend"]["success_rate_delta"] == pytest.approx(0.8 - 1.0)
    b = next(i for i in body["instances"] if i["instance_name"] == "b")
    assert (b["requests"], b["p50_ms"], b["uptime"], b["estimated_cost"]) == (2, 50.0, None, 0.0)
    assert b["trend"]["requests_change"] is None  # nothing before
    assert body["window"]["seconds"] == 86400


def test_the_report_query_count_does_not_grow_with_rows(dataset, django_assert_max_num_queries):
    with django_assert_max_num_queries(30):
        services.report_build(end=END)


@pytest.mark.parametrize("fmt", ["json", "csv", "html"])
def test_the_command_writes_each_format(dataset, fmt, tmp_path):
    out = tmp_path / f"report.{fmt}"
    call_command("performance_report", "--since", "7d", "--format", fmt, "--output", str(out))
    text = out.read_text()
    if fmt == "json":
        assert json.loads(text)["window"]["seconds"] == 7 * 86400
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        assert rows[0]["scope"] == "total"
        assert {r["instance_name"] for r in rows if r["scope"] == "instance"} >= {"a", "b"}
    else:
        assert "<table>" in text and "Performance report" in text


def test_the_command_prints_to_stdout_and_stores_on_request(dataset):
    stdout = io.StringIO()
    call_command("performance_report", "--since", "24h", "--store", stdout=stdout)
    assert "totals" in json.loads(stdout.getvalue())
    assert PerformanceReport.objects.get().trigger == "command"


@pytest.mark.parametrize("since", ["0h", "24", "abc", "-1d"])
def test_the_command_rejects_bad_windows(since):
    with pytest.raises(CommandError):
        call_command("performance_report", "--since", since)


class TestReportsApi:
    def test_list_detail_and_download(self, dataset, api_client):
        report = services.report_create(end=END, trigger="api")

        listing = api_client.get("/api/reports")
        assert listing.status_code == 200
        assert listing.json()["results"][0]["id"] == report.pk and "body" not in listing.json()["results"][0]
        detail = api_client.get(f"/api/reports/{report.pk}")
        assert detail.json()["body"]["totals"]["requests"] == 12
        for fmt, content_type in [("json", "application/json"), ("csv", "text/csv"), ("html", "text/html")]:
            response = api_client.get(f"/api/reports/{report.pk}/download?format={fmt}")
            assert response.status_code == 200
            assert response["Content-Type"].startswith(content_type)
            assert f"performance-report-{report.pk}.{fmt}" in response["Content-Disposition"]

    def test_bad_format_is_400_and_missing_report_404(self, api_client, db):
        report = PerformanceReport.objects.create(
            window_start=END - HOUR, window_end=END, generated_at=END, body={"totals": {}}
        )
        assert api_client.get(f"/api/reports/{report.pk}/download?format=xml").status_code == 400
        assert api_client.get("/api/reports/999999").status_code == 404
        assert api_client.get("/api/reports?limit=0").status_code == 400

    def test_the_list_costs_a_bounded_number_of_queries(self, api_client, db, django_assert_max_num_queries):
        for _ in range(20):
            PerformanceReport.objects.create(window_start=END - HOUR, window_end=END, generated_at=END, body={})
        with django_assert_max_num_queries(6):
            assert len(api_client.get("/api/reports").json()["results"]) == 20


class TestRequestIds:
    def test_a_request_without_an_id_gets_one(self, client):
        response = client.get("/health")
        assert len(response["X-Request-ID"]) == 32

    def test_a_callers_id_is_kept_and_an_unsafe_one_replaced(self, client):
        assert client.get("/health", HTTP_X_REQUEST_ID="abc-123")["X-Request-ID"] == "abc-123"
        assert client.get("/health", HTTP_X_REQUEST_ID="bad id\nx")["X-Request-ID"] != "bad id\nx"

    def test_logs_during_the_request_carry_the_id(self, rf):
        import logging

        from ishchat.logging import JsonFormatter
        from ishchat.middleware import RequestIdMiddleware

        lines = []

        def view(request):
            record = logging.LogRecord("t", logging.INFO, "", 0, "api_key=sk-abcdefghijkl", (), None)
            lines.append(JsonFormatter().format(record))
            from django.http import HttpResponse

            return HttpResponse("ok")

        RequestIdMiddleware(view)(rf.get("/", HTTP_X_REQUEST_ID="req-42"))
        payload = json.loads(lines[0])
        assert payload["request_id"] == "req-42"
        assert "sk-abcdefghijkl" not in lines[0]
