"""The admin edits runtime settings through the same validation as the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from configuration.models import RuntimeSetting
from configuration.selectors import config_runtime_overrides, config_value
from configuration.services import config_update

pytestmark = pytest.mark.django_db

ADD = "/admin/configuration/runtimesetting/add/"
CHANGELIST = "/admin/configuration/runtimesetting/"


@pytest.fixture(autouse=True)
def _defaults_only(no_config_file: Path) -> None:
    pass


def test_adding_a_valid_setting_saves_it_through_the_service(admin_client: Client, admin_user: Any) -> None:
    response = admin_client.post(ADD, {"path": "load_balancer.strategy", "value": '"random"'})
    assert response.status_code == 302, response.content
    row = RuntimeSetting.objects.get()
    assert (row.path, row.value, row.updated_by) == ("load_balancer.strategy", "random", f"admin:{admin_user.username}")
    assert config_value("load_balancer.strategy") == "random"


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("load_balancer.strategy", '"fastest"', "must be one of"),
        ("load_balancer.strategyy", '"random"', "unknown key"),
        ("load_balancer.breaker", '{"open_seconds": 3}', "is a group of settings"),
        ("auto_scaling.min_instances", "50", "auto_scaling.max_instances: must be &gt;= auto_scaling.min_instances"),
        ("load_balancer.healthy_threshold", "null", "This field is required"),
        ("load_balancer.healthy_threshold", "not json", "Enter a valid JSON"),
    ],
)
def test_a_bad_value_shows_a_form_error_and_saves_nothing(
    admin_client: Client, path: str, value: str, message: str
) -> None:
    response = admin_client.post(ADD, {"path": path, "value": value})
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not RuntimeSetting.objects.exists()


def test_changing_a_value_validates_it(admin_client: Client) -> None:
    config_update(changes={"health_checks": {"latency_samples": 4}}, updated_by="t")
    row = RuntimeSetting.objects.get()
    url = f"{CHANGELIST}{row.pk}/change/"

    assert admin_client.post(url, {"value": "99"}).status_code == 200
    assert config_value("health_checks.latency_samples") == 4

    assert admin_client.post(url, {"value": "6"}).status_code == 302
    assert config_value("health_checks.latency_samples") == 6


def test_deleting_reverts_to_the_lower_layers(admin_client: Client) -> None:
    config_update(changes={"health_checks": {"latency_samples": 4}}, updated_by="t")
    row = RuntimeSetting.objects.get()
    response = admin_client.post(f"{CHANGELIST}{row.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert config_runtime_overrides() == {}
    assert config_value("health_checks.latency_samples") == 3


def test_a_delete_that_breaks_a_rule_is_refused_with_a_message(admin_client: Client) -> None:
    config_update(changes={"auto_scaling": {"min_instances": 20, "max_instances": 40}}, updated_by="t")
    row = RuntimeSetting.objects.get(path="auto_scaling.max_instances")
    response = admin_client.post(f"{CHANGELIST}{row.pk}/delete/", {"post": "yes"}, follow=True)
    assert "Not removed" in response.content.decode()
    assert config_value("auto_scaling.max_instances") == 40


def test_the_bulk_action_removes_overrides_through_the_service(admin_client: Client) -> None:
    config_update(changes={"health_checks": {"latency_samples": 4, "jitter_seconds": 1}}, updated_by="t")
    pks = list(RuntimeSetting.objects.values_list("pk", flat=True))
    response = admin_client.post(CHANGELIST, {"action": "remove_overrides", "_selected_action": pks}, follow=True)
    assert "Removed 2 override(s)" in response.content.decode()
    assert config_runtime_overrides() == {}


def test_the_changelist_shows_each_rows_effective_source(admin_client: Client) -> None:
    config_update(changes={"health_checks": {"latency_samples": 4}}, updated_by="t")
    RuntimeSetting.objects.create(path="health_checks.retired", value=1)
    content = admin_client.get(CHANGELIST).content.decode()
    assert "runtime" in content
    assert "not applied: unknown key" in content


def test_the_effective_page_lists_every_value_with_its_source(admin_client: Client) -> None:
    config_update(changes={"load_balancer": {"strategy": "random"}}, updated_by="t")
    response = admin_client.get(f"{CHANGELIST}effective/")
    assert response.status_code == 200
    rows = {row["path"]: row for row in response.context["rows"]}
    assert rows["load_balancer.strategy"] == {
        "path": "load_balancer.strategy",
        "value": '"random"',
        "source": "runtime",
    }
    assert rows["monitoring.retention_days"]["source"] == "default"


def test_the_effective_page_needs_staff(client: Client) -> None:
    assert client.get(f"{CHANGELIST}effective/").status_code == 302
