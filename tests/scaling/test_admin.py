"""The auto-scaling admin: changelists with bounded queries, the form validated and saved by the
services (engine rules, write-only webhook secret), and the evaluate actions."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from ishchat import crypto
from scaling import services
from scaling.models import ProviderGroup, ScalingEvent
from tests.scaling.support import TRACKING, make_group, make_member

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(admin_user: Any) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def form_data(group: ProviderGroup, **changes: Any) -> dict[str, Any]:
    data = {
        "group_name": group.group_name, "provider_type": group.provider_type, "model_name": group.model_name,
        "description": group.description, "min_instances": group.min_instances,
        "max_instances": group.max_instances, "auto_scaling_enabled": "on" if group.auto_scaling_enabled else "",
        "scale_up_threshold": group.scale_up_threshold, "scale_down_threshold": group.scale_down_threshold,
        "target_utilization": group.target_utilization, "tolerance": group.tolerance,
        "scale_up_cooldown": group.scale_up_cooldown, "scale_down_cooldown": group.scale_down_cooldown,
        "scale_down_stabilization_seconds": group.scale_down_stabilization_seconds,
        "scale_up_limit_percent": group.scale_up_limit_percent,
        "scale_up_limit_instances": group.scale_up_limit_instances,
        "scale_down_limit_percent": group.scale_down_limit_percent, "triggers": "{}",
        "predictive_mode": group.predictive_mode, "instance_capacity_rpm": "",
        "forecast_horizon_seconds": group.forecast_horizon_seconds, "schedules": "[]", "backend": group.backend,
        "forecast_season_minutes": group.forecast_season_minutes, "forecast_seasonality": group.forecast_seasonality,
        "backend_settings": '{"drain_timeout_seconds": 120}', "backend_secret": "",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value != "" or key in ("model_name", "description")}


@pytest.mark.parametrize("model", ["providergroup", "scalingevent"])
def test_changelists_render_in_a_fixed_number_of_queries(operator, model):
    def add(n: int) -> None:
        for _ in range(n):
            group = make_group()
            make_member(group)
            ScalingEvent.objects.create(group=group, direction="up", trigger="utilization", reason="x",
                                        old_count=1, new_count=2)

    url = reverse(f"admin:scaling_{model}_changelist")
    add(2)
    with CaptureQueriesContext(connection) as few:
        assert operator.get(url).status_code == 200
    add(15)
    with CaptureQueriesContext(connection) as many:
        assert operator.get(url).status_code == 200

    assert len(many.captured_queries) == len(few.captured_queries)


def test_the_form_refuses_what_the_engine_refuses(operator):
    group = services.group_create(group_name="g", provider_type="openai")
    url = reverse("admin:scaling_providergroup_change", args=[group.pk])

    response = operator.post(url, form_data(group, scale_up_threshold=0.1, scale_down_threshold=0.3))

    assert response.status_code == 200  # the form again, with the error
    assert "scale_up_threshold must be greater than scale_down_threshold" in response.content.decode()
    group.refresh_from_db()
    assert group.scale_up_threshold == 0.8


def test_the_form_saves_through_the_service_and_keeps_the_secret_write_only(operator, webhook):
    group = services.group_create(group_name="g", provider_type="openai")
    url = reverse("admin:scaling_providergroup_change", args=[group.pk])

    response = operator.post(url, form_data(group, backend="webhook", backend_settings=f'{{"url": "{webhook.url}"}}',
                                            backend_secret="admin-secret-42", max_instances=7))

    assert response.status_code == 302, response.content.decode()[:2000]
    group.refresh_from_db()
    assert group.max_instances == 7 and group.backend == "webhook"
    assert crypto.decrypt(group.backend_settings["secret_encrypted"]) == "admin-secret-42"
    page = operator.get(url).content.decode()
    assert "admin-secret-42" not in page and group.backend_settings["secret_encrypted"] not in page


def test_adding_a_group_goes_through_the_service(operator):
    blank = ProviderGroup(group_name="new-group", provider_type="zai")

    response = operator.post(reverse("admin:scaling_providergroup_add"), form_data(blank))

    assert response.status_code == 302, response.content.decode()[:2000]
    created = ProviderGroup.objects.get(group_name="new-group")
    assert created.desired_instances == created.min_instances


def test_the_evaluate_actions_call_the_service(operator):
    group = make_group("busy", **TRACKING)
    for _ in range(2):
        make_member(group, current_load=9)
    url = reverse("admin:scaling_providergroup_changelist")

    response = operator.post(url, {"action": "evaluate_dry_run", "_selected_action": [group.pk]}, follow=True)

    texts = [str(message) for message in get_messages(response.wsgi_request)]
    assert any(text.startswith("busy: dry_run: scale up 2 -> 3") for text in texts)
    assert not ScalingEvent.objects.exists()

    operator.post(url, {"action": "evaluate_now", "_selected_action": [group.pk]})
    assert ScalingEvent.objects.get().status == "pending"
