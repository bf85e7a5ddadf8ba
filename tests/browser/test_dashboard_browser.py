"""The operator's dashboard in a real browser: log in, charts, live status, a row action."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from instances.choices import InstanceStatus, RequestStatus
from instances.models import AIInstance, RequestLog, StatusTransition
from instances.services import instance_register, instance_set_operator_status
from scaling.models import ProviderGroup
from tests.browser.conftest import screenshot

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fleet(transactional_db: None) -> list[AIInstance]:
    group = ProviderGroup.objects.create(group_name="openai-main", provider_type="openai", model_name="gpt-4o-mini")
    statuses = [InstanceStatus.HEALTHY] * 4 + [InstanceStatus.DEGRADED, InstanceStatus.UNHEALTHY]
    instances = [
        instance_register(
            provider_type="openai",
            model_name="gpt-4o-mini",
            instance_name=f"openai-{n + 1}",
            endpoint_url="http://127.0.0.1:9/v1",
            api_key=f"sk-browser-test-key-{n:04d}0000",
            group_id=group.pk if n < 4 else None,
            region="eu-west-1",
        )
        for n in range(len(statuses))
    ]
    for instance, status in zip(instances, statuses, strict=True):
        score = 0.95 if status == InstanceStatus.HEALTHY else 0.4
        AIInstance.objects.filter(pk=instance.pk).update(status=status, health_score=score, current_load=3)
    now = timezone.now()
    RequestLog.objects.bulk_create(
        RequestLog(
            request_id=f"req-{minute}-{n}",
            instance=instances[n % 4],
            provider_type="openai",
            model_name="gpt-4o-mini",
            status=RequestStatus.ERROR if (minute + n) % 9 == 0 else RequestStatus.SUCCESS,
            total_latency_ms=220 + 15 * ((minute * 7 + n) % 11),
            failover=n == 0 and minute % 10 == 0,
            created_at=now - timedelta(minutes=minute, seconds=n),
        )
        for minute in range(45)
        for n in range(3 + minute % 5)
    )
    return [AIInstance.objects.get(pk=instance.pk) for instance in instances]


def test_an_operator_logs_in_and_sees_the_overview_with_charts(page: Any, fleet: list[AIInstance]) -> None:
    page.goto("/dashboard/")
    assert page.locator(".kpi").count() == 6
    assert page.locator("#overview svg.chart polyline").count() >= 2
    assert "4/6" in page.locator(".kpi").first.inner_text()
    screenshot(page, "overview")


def test_a_status_change_appears_without_a_reload(page: Any, fleet: list[AIInstance]) -> None:
    target = fleet[0]
    page.goto("/dashboard/instances/")
    row = page.locator(f"#row-{target.instance_id}")
    assert row.locator("[data-status]").get_attribute("data-status") == "healthy"
    page.evaluate("window.__sameDocument = true")

    instance_set_operator_status(instance=target, status=InstanceStatus.MAINTENANCE, actor="browser-test")

    # The table polls every 5 s; the new status arrives with the next poll.
    page.locator(f"#row-{target.instance_id} [data-status=maintenance]").wait_for(timeout=12_000)
    assert page.evaluate("window.__sameDocument") is True  # no reload happened
    screenshot(page, "instances-after-status-change")


def test_a_row_action_drains_an_instance_through_the_service(page: Any, fleet: list[AIInstance]) -> None:
    target = fleet[1]
    page.goto("/dashboard/instances/")
    page.evaluate("window.__sameDocument = true")
    page.locator(f"#row-{target.instance_id}").get_by_role("button", name="Drain").click()
    page.locator(f"#row-{target.instance_id} [data-status=draining]").wait_for()
    assert page.locator(f"#row-{target.instance_id} .flash-ok").inner_text() == "Set to draining"
    assert page.evaluate("window.__sameDocument") is True
    target.refresh_from_db()
    assert target.status == InstanceStatus.DRAINING
    assert StatusTransition.objects.filter(instance=target, new_status="draining", source="operator").exists()
    screenshot(page, "instances-row-action")


def test_filters_sort_and_every_page_render_in_the_browser(page: Any, fleet: list[AIInstance]) -> None:
    page.goto("/dashboard/instances/")
    page.select_option("select[name=status]", "unhealthy")
    page.wait_for_url("**status=unhealthy**")
    assert page.locator(".instance-row").count() == 1
    page.goto(f"/dashboard/instances/{fleet[0].instance_id}/")
    assert page.locator("#instance-live").is_visible()
    assert "sk-browser-test-key" not in page.content()
    screenshot(page, "instance-detail")
    page.goto(f"/dashboard/groups/{fleet[0].group_id}/")
    page.get_by_role("button", name="Dry run now").click()
    page.get_by_text("nothing was changed").wait_for()
    screenshot(page, "group-dry-run")
    for path, name in [
        ("/dashboard/groups/", "groups"),
        ("/dashboard/balancer/", "balancer"),
        ("/dashboard/alerts/", "alerts"),
        ("/dashboard/configuration/", "configuration"),
        ("/dashboard/reports/", "reports"),
    ]:
        response = page.goto(path)
        assert response is not None and response.status == 200, path
        screenshot(page, name)
