"""Row actions and forms call the services the API calls, and answer with the swapped fragment."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from alerts.choices import AlertStatus
from alerts.models import Alert
from instances.choices import InstanceStatus
from instances.models import AIInstance, HealthCheck, StatusTransition
from instances.services import instance_register
from scaling.models import ProviderGroup, ScalingEvent
from tests.dashboard.conftest import PROVIDER_KEY

pytestmark = pytest.mark.django_db


@pytest.fixture
def instance(sim_server: Any) -> AIInstance:
    return instance_register(
        provider_type="openai",
        model_name="sim-model",
        instance_name="dash-1",
        endpoint_url=sim_server.base_url("dash-1"),
        api_key=PROVIDER_KEY,
    )


def _act(client: Client, instance: AIInstance, action: str) -> str:
    response = client.post(reverse("dashboard:instance-action", args=[instance.instance_id, action]))
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.parametrize(
    ("action", "status"),
    [("drain", InstanceStatus.DRAINING), ("maintenance", InstanceStatus.MAINTENANCE)],
)
def test_a_row_action_parks_the_instance_records_the_transition_and_returns_the_row(
    htmx_client: Client, instance: AIInstance, action: str, status: str
) -> None:
    html = _act(htmx_client, instance, action)
    instance.refresh_from_db()
    assert instance.status == status
    transition = StatusTransition.objects.get(instance=instance)
    assert (transition.old_status, transition.new_status, transition.source) == ("starting", status, "operator")
    assert transition.reason == "set by dashboard:operator"
    assert html.lstrip().startswith(f'<tr id="row-{instance.instance_id}"')
    assert f'data-status="{status}"' in html
    assert 'id="nav-counters" class="counters" hx-swap-oob="true"' in html


def test_enable_puts_a_parked_instance_back_to_starting(htmx_client: Client, instance: AIInstance) -> None:
    _act(htmx_client, instance, "maintenance")
    html = _act(htmx_client, instance, "enable")
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.STARTING
    assert list(StatusTransition.objects.filter(instance=instance).values_list("new_status", flat=True)) == [
        "starting",
        "maintenance",
    ]
    assert "Enabled" in html


def test_check_now_runs_a_real_health_check_against_the_provider(
    htmx_client: Client, instance: AIInstance, sim_server: Any
) -> None:
    html = _act(htmx_client, instance, "check")
    check = HealthCheck.objects.get(instance=instance)
    assert check.check_type == "basic" and check.status == "healthy"
    assert sim_server.stats("dash-1")["total"] == 1
    assert "Checked: healthy" in html


def test_an_action_the_service_refuses_shows_its_message_in_the_row(htmx_client: Client, instance: AIInstance) -> None:
    AIInstance.objects.filter(pk=instance.pk).update(is_active=False)
    html = _act(htmx_client, instance, "drain")
    assert "deregistered instance cannot change status" in html
    assert not StatusTransition.objects.exists()


def test_actions_need_post_csrf_and_staff(instance: AIInstance, staff: Any) -> None:
    url = reverse("dashboard:instance-action", args=[instance.instance_id, "drain"])
    assert Client().post(url).status_code == 302  # anonymous: to the login
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    assert client.get(url).status_code == 405
    assert client.post(url).status_code == 403  # no CSRF token
    client.get(reverse("dashboard:instances"))  # sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    assert client.post(url, headers={"X-CSRFToken": token, "HX-Request": "true"}).status_code == 200
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.DRAINING


def test_an_unknown_action_is_refused(htmx_client: Client, instance: AIInstance) -> None:
    response = htmx_client.post(reverse("dashboard:instance-action", args=[instance.instance_id, "explode"]))
    assert response.status_code == 400


def test_acknowledging_an_alert_swaps_its_row_and_the_counters(htmx_client: Client) -> None:
    now = timezone.now()
    alert = Alert.objects.create(
        rule="instance_unhealthy", severity="critical", dedup_key="k1", title="it broke",
        opened_at=now, last_seen_at=now,
    )
    response = htmx_client.post(reverse("dashboard:alert-ack", args=[alert.pk]))
    html = response.content.decode()
    alert.refresh_from_db()
    assert alert.status == AlertStatus.ACKNOWLEDGED and alert.acknowledged_by == "dashboard:operator"
    assert html.lstrip().startswith(f'<tr id="alert-{alert.pk}"') and "Acknowledge</button>" not in html
    assert "0 open alerts" in html and 'hx-swap-oob="true"' in html


def test_a_resolved_alert_cannot_be_acknowledged(htmx_client: Client) -> None:
    now = timezone.now()
    alert = Alert.objects.create(
        rule="instance_unhealthy", severity="critical", dedup_key="k2", title="gone", opened_at=now,
        last_seen_at=now, status=AlertStatus.RESOLVED, resolved_at=now,
    )
    html = htmx_client.post(reverse("dashboard:alert-ack", args=[alert.pk])).content.decode()
    assert "already resolved" in html


def test_the_alert_tabs_filter_by_status(htmx_client: Client) -> None:
    now = timezone.now()
    Alert.objects.create(rule="instance_unhealthy", severity="warning", dedup_key="a", title="open one",
                         opened_at=now, last_seen_at=now)
    Alert.objects.create(rule="instance_unhealthy", severity="warning", dedup_key="b", title="closed one",
                         opened_at=now, last_seen_at=now, status=AlertStatus.RESOLVED, resolved_at=now)
    open_html = htmx_client.get(reverse("dashboard:alerts")).content.decode()
    assert "open one" in open_html and "closed one" not in open_html
    resolved = htmx_client.get(reverse("dashboard:alerts"), {"status": "resolved"}).content.decode()
    assert "closed one" in resolved and "open one" not in resolved


@pytest.fixture
def scaling_group(db: None) -> ProviderGroup:
    from scaling import services

    return services.group_create(
        group_name="sim-pool", provider_type="openai", model_name="sim-model", min_instances=0, max_instances=5
    )


def test_the_manual_scale_form_calls_group_scale_manual(htmx_client: Client, scaling_group: ProviderGroup) -> None:
    response = htmx_client.post(
        reverse("dashboard:group-scale", args=[scaling_group.pk]), {"desired_instances": "3", "reason": "launch"}
    )
    html = response.content.decode()
    assert response.status_code == 200, html
    event = ScalingEvent.objects.get(group=scaling_group)
    assert (event.trigger, event.old_count, event.new_count) == ("manual", 0, 3)
    assert event.actor == "dashboard:operator"
    assert html.lstrip().startswith('<div id="group-panel">') and "Scaling to 3 requested." in html


def test_the_manual_scale_form_shows_the_service_error(htmx_client: Client, scaling_group: ProviderGroup) -> None:
    response = htmx_client.post(reverse("dashboard:group-scale", args=[scaling_group.pk]), {"desired_instances": "50"})
    assert response.status_code == 422
    assert "flash-error" in response.content.decode()
    assert not ScalingEvent.objects.exists()


def test_the_dry_run_panel_shows_the_engine_reasoning_and_changes_nothing(
    htmx_client: Client, scaling_group: ProviderGroup
) -> None:
    response = htmx_client.post(reverse("dashboard:group-dry-run", args=[scaling_group.pk]))
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="decision"') and "nothing was changed" in html
    scaling_group.refresh_from_db()
    assert scaling_group.last_decision == {} and not ScalingEvent.objects.exists()


def test_a_forecast_in_the_decision_is_drawn(staff_client: Client, scaling_group: ProviderGroup) -> None:
    ProviderGroup.objects.filter(pk=scaling_group.pk).update(
        last_decision={
            "direction": "up", "current": 1, "desired": 2, "reason": "predicted peak", "proposals": [],
            "forecast": {"method": "holt_winters", "horizon_seconds": 180, "values": [10, 12, 15],
                         "predicted_peak_rate": 15, "proposal": 2, "applied": True},
        }
    )
    html = staff_client.get(reverse("dashboard:group", args=[scaling_group.pk])).content.decode()
    assert "Forecast (holt_winters, 180 s horizon)" in html and "predicted peak" in html


def test_the_group_page_simulates_its_policy_on_its_recorded_traffic(staff_client):
    from tests.scaling.support import add_recorded_traffic, make_group, make_member

    group = make_group("simulated", min_instances=1, max_instances=10, instance_capacity_rpm=60.0)
    add_recorded_traffic(make_member(group), minutes=40, busy_from=20, quiet=30, busy=150)
    url = f"/dashboard/groups/{group.pk}/simulate/"

    page = staff_client.get(f"/dashboard/groups/{group.pk}/")
    assert "What would this policy have done?" in page.content.decode()
    done = staff_client.post(url, {"days": "0.05"}, HTTP_HX_REQUEST="true")

    assert done.status_code == 200
    body = done.content.decode()
    assert "simulated: recorded traffic, last 0.05 days" in body
    assert "group simulated" in body and "hpa-v2 defaults" in body

    refused = staff_client.post(url, {"days": "5"}, HTTP_HX_REQUEST="true")
    assert refused.status_code == 422 and "at most 3" in refused.content.decode()
    nan = staff_client.post(url, {"days": "1", "capacity_rpm": "nan"}, HTTP_HX_REQUEST="true")
    assert nan.status_code == 422 and "capacity" in nan.content.decode()
    garbage = staff_client.post(url, {"days": "lots"}, HTTP_HX_REQUEST="true")
    assert garbage.status_code == 422 and "numbers" in garbage.content.decode()
