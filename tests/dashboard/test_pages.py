"""Every dashboard page and partial: staff only, the partial for htmx, bounded queries, no secrets."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.apps import apps as django_apps
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from alerts.models import Alert
from configuration.selectors import config_cache_clear
from instances.choices import RequestStatus
from instances.models import AIInstance, HealthCheck, RequestLog, StatusTransition
from instances.services import instance_deregister, instance_register
from scaling.models import ScalingEvent
from tests.dashboard.conftest import PROVIDER_KEY

pytestmark = pytest.mark.django_db

PAGES: list[tuple[str, dict[str, Any], str]] = [
    ("dashboard:overview", {}, 'id="overview"'),
    ("dashboard:instances", {}, 'id="instance-table"'),
    ("dashboard:groups", {}, 'id="group-table"'),
    ("dashboard:balancer", {}, 'id="balancer"'),
    ("dashboard:alerts", {}, 'id="alert-table"'),
    ("dashboard:reports", {}, 'id="reports"'),
    ("dashboard:configuration", {}, 'id="config-table"'),
]


def _traffic(instances: list[AIInstance], per_instance: int = 2) -> None:
    now = timezone.now()
    RequestLog.objects.bulk_create(
        RequestLog(
            request_id=f"r{i}-{n}",
            instance=instance,
            original_instance=instance,
            provider_type=instance.provider_type,
            model_name=instance.model_name,
            status=RequestStatus.ERROR if n % 5 == 0 else RequestStatus.SUCCESS,
            total_latency_ms=100 + 10 * n,
            failover=n % 4 == 0,
            created_at=now - timedelta(seconds=30 * n),
        )
        for i, instance in enumerate(instances)
        for n in range(per_instance)
    )


def _history(instances: list[AIInstance], group: Any) -> None:
    now = timezone.now()
    StatusTransition.objects.bulk_create(
        StatusTransition(instance=i, old_status="starting", new_status=i.status, reason="check", source="health_check")
        for i in instances
    )
    HealthCheck.objects.bulk_create(
        HealthCheck(instance=i, check_type="basic", status="healthy", score=0.9, response_time_ms=50, checked_at=now)
        for i in instances
    )
    Alert.objects.bulk_create(
        Alert(
            rule="instance_unhealthy",
            severity="critical",
            dedup_key=f"unhealthy:instance:{i.pk}",
            instance=i,
            title=f"{i.instance_name} is unhealthy",
            opened_at=now,
            last_seen_at=now,
        )
        for i in instances
    )
    ScalingEvent.objects.bulk_create(
        ScalingEvent(group=group, direction="up", trigger="utilization", reason="busy", old_count=n, new_count=n + 1,
                     status="completed")
        for n in range(len(instances))
    )


@pytest.mark.parametrize(("name", "kwargs", "marker"), PAGES)
def test_anonymous_users_are_sent_to_the_admin_login(client: Client, name: str, kwargs: dict, marker: str) -> None:
    response = client.get(reverse(name, kwargs=kwargs))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_non_staff_users_are_sent_to_the_admin_login(django_user_model: Any) -> None:
    user = django_user_model.objects.create_user("someone", password="pw-someone-1")
    client = Client()
    client.force_login(user)
    response = client.get(reverse("dashboard:overview"))
    assert response.status_code == 302


def test_the_root_redirects_to_the_dashboard(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == reverse("dashboard:overview")


@pytest.mark.parametrize(("name", "kwargs", "marker"), PAGES)
def test_each_page_renders_whole_and_its_partial_alone(
    staff_client: Client, htmx_client: Client, fleet: Any, group: Any, name: str, kwargs: dict, marker: str
) -> None:
    instances = fleet(6)
    _traffic(instances)
    _history(instances, group)
    page = staff_client.get(reverse(name, kwargs=kwargs))
    assert page.status_code == 200
    html = page.content.decode()
    assert "<html" in html and marker in html and 'class="sidebar"' in html
    partial = htmx_client.get(reverse(name, kwargs=kwargs))
    assert partial.status_code == 200
    fragment = partial.content.decode()
    assert marker in fragment
    assert "<html" not in fragment and 'class="sidebar"' not in fragment


def _queries(client: Client, url: str) -> int:
    """Queries of one request, from cold caches so every measurement starts alike."""
    cache.clear()
    config_cache_clear()
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code in (200, 286), response.status_code
    return len(captured)


def _detail_urls(instance: AIInstance, group: Any) -> list[str]:
    return [
        reverse("dashboard:instance", args=[instance.instance_id]),
        reverse("dashboard:group", args=[group.pk]),
    ]


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "partial"])
def test_query_counts_do_not_grow_with_the_fleet(
    staff: Any, fleet: Any, group: Any, htmx: bool
) -> None:
    client = Client(headers={"HX-Request": "true"} if htmx else {})
    client.force_login(staff)
    urls = [reverse(name) for name, _, _ in PAGES] + [f"{reverse('dashboard:instances')}?sort=-load&page=2"]

    small = fleet(3)
    _traffic(small)
    _history(small, group)
    urls += _detail_urls(small[0], group)
    before = {url: _queries(client, url) for url in urls}

    more = fleet(300)
    _traffic(more)
    _history(more, group)
    after = {url: _queries(client, url) for url in urls}
    assert after == before
    assert max(after.values()) <= 20


def test_an_htmx_request_for_the_instances_page_gets_only_the_table(htmx_client: Client, fleet: Any) -> None:
    fleet(30)
    response = htmx_client.get(reverse("dashboard:instances"), {"status": "healthy", "sort": "-name"})
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="instance-table"')
    assert "<form" not in html  # the filter form stays on the page
    assert 'hx-swap-oob="true"' in html  # header counters ride along
    assert html.count('class="instance-row"') == 8  # 30 instances, every fourth healthy
    assert "bulk-00028" in html.split('class="instance-row"')[1]  # sorted by name, descending


def test_the_instances_table_paginates_filters_and_searches(htmx_client: Client, fleet: Any) -> None:
    fleet(60)
    first = htmx_client.get(reverse("dashboard:instances")).content.decode()
    assert first.count('class="instance-row"') == 25 and "page 1 of 3" in first
    last = htmx_client.get(reverse("dashboard:instances"), {"page": 3}).content.decode()
    assert last.count('class="instance-row"') == 10
    found = htmx_client.get(reverse("dashboard:instances"), {"q": "bulk-0004", "model": "model-1"}).content.decode()
    # bulk-00040..49 whose model is model-1 (i % 3 == 1): 40, 43, 46, 49
    assert found.count('class="instance-row"') == 4
    assert all(f"bulk-000{n}" in found for n in (40, 43, 46, 49))


def test_polling_an_empty_table_stops_with_286(htmx_client: Client, fleet: Any) -> None:
    fleet(3)
    response = htmx_client.get(reverse("dashboard:instances"), {"q": "no-such-instance"})
    assert response.status_code == 286
    assert "hx-trigger" not in response.content.decode().split('id="instance-table"')[1].split(">")[0]


def test_the_detail_of_a_deregistered_instance_stops_polling_with_286(htmx_client: Client, sim_server: Any) -> None:
    instance = instance_register(
        provider_type="openai", model_name="sim-model", instance_name="gone",
        endpoint_url=sim_server.base_url("gone"), api_key=PROVIDER_KEY,
    )
    url = reverse("dashboard:instance", args=[instance.instance_id])
    live = htmx_client.get(url)
    assert live.status_code == 200 and "every 5s" in live.content.decode()
    instance_deregister(instance=instance, actor="test")
    stopped = htmx_client.get(url)
    assert stopped.status_code == 286
    assert "every 5s" not in stopped.content.decode()
    assert "Deregistered" in stopped.content.decode()


def test_the_provider_key_never_appears_on_any_page(
    staff_client: Client, htmx_client: Client, sim_server: Any, group: Any
) -> None:
    instance = instance_register(
        provider_type="openai", model_name="sim-model", instance_name="secretive",
        endpoint_url=sim_server.base_url("secretive"), api_key=PROVIDER_KEY, group_id=group.pk,
    )
    _traffic([instance])
    _history([instance], group)
    urls = [reverse(name) for name, _, _ in PAGES] + _detail_urls(instance, group)
    for client in (staff_client, htmx_client):
        for url in urls:
            html = client.get(url).content.decode()
            assert PROVIDER_KEY not in html, url
            assert instance.api_key_encrypted not in html, url
    detail = staff_client.get(reverse("dashboard:instance", args=[instance.instance_id])).content.decode()
    assert "set, ends …4242" in detail


def test_unknown_instances_and_groups_are_404(staff_client: Client) -> None:
    assert staff_client.get(reverse("dashboard:instance", args=["not-a-uuid"])).status_code == 404
    assert staff_client.get(reverse("dashboard:group", args=["12345"])).status_code == 404


def test_the_overview_shows_kpis_charts_and_the_feed(staff_client: Client, fleet: Any, group: Any) -> None:
    instances = fleet(3)
    _traffic(instances, per_instance=5)
    _history(instances, group)
    html = staff_client.get(reverse("dashboard:overview")).content.decode()
    assert "bulk-00001: starting → degraded" in html
    assert html.count("<svg") >= 2 and "polyline" in html
    assert "Requests / min" in html and "p95 latency" in html
    assert "bulk-00000 is unhealthy" in html and "openai-pool: up" in html


def test_the_configuration_page_shows_values_and_their_sources(staff_client: Client) -> None:
    html = staff_client.get(reverse("dashboard:configuration")).content.decode()
    assert "load_balancer.strategy" in html
    assert "badge-source-file" in html


def test_reports_say_honestly_when_the_monitoring_app_is_missing(staff_client: Client) -> None:
    html = staff_client.get(reverse("dashboard:reports")).content.decode()
    if django_apps.is_installed("monitoring"):
        assert "No reports stored yet" in html
    else:
        assert "Not available" in html and "monitoring app" in html
        assert staff_client.get(reverse("dashboard:report-download", args=[1, "csv"])).status_code == 404


@pytest.mark.skipif(not django_apps.is_installed("monitoring"), reason="the monitoring app is not installed yet")
def test_stored_reports_are_listed_and_downloadable(staff_client: Client) -> None:
    from monitoring.services import report_create

    report_id = report_create().pk
    html = staff_client.get(reverse("dashboard:reports")).content.decode()
    assert reverse("dashboard:report-download", args=[report_id, "csv"]) in html
    response = staff_client.get(reverse("dashboard:report-download", args=[report_id, "csv"]))
    assert response.status_code == 200 and "attachment" in response["Content-Disposition"]
