"""The operator admin: changelists sized for big tables, a write-only provider key,
saves and actions that go through the registry services."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from instances import services
from instances.admin import HISTORY_INLINE_ROWS
from instances.choices import InstanceStatus
from instances.models import (
    AIInstance,
    HealthCheck,
    InstanceMetrics,
    LoadBalancerConfig,
    RequestLog,
    StatusTransition,
)
from ishchat import crypto
from scaling.models import ProviderGroup, ScalingEvent

pytestmark = pytest.mark.django_db

KEY = "provider-key-0123456789-wxyz"

CHANGELISTS = [
    "instances_aiinstance",
    "instances_healthcheck",
    "instances_instancemetrics",
    "instances_requestlog",
    "instances_statustransition",
    "instances_loadbalancerconfig",
    "scaling_providergroup",
    "scaling_scalingevent",
]


@pytest.fixture
def operator(admin_user: Any) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def register(name: str = "zai-1", **changes: Any) -> AIInstance:
    fields: dict[str, Any] = {
        "provider_type": "zai",
        "model_name": "glm-4",
        "instance_name": name,
        "endpoint_url": "http://127.0.0.1:8001/v1",
        "api_key": KEY,
        **changes,
    }
    return services.instance_register(**fields)


def make_fleet(count: int, start: int = 0) -> None:
    """`count` instances, each in its own group, with a row of every history model."""
    now = timezone.now()
    for n in range(start, start + count):
        group = ProviderGroup.objects.create(group_name=f"group-{n}", provider_type="zai")
        instance = register(f"zai-{n}", group_id=group.pk, tags=["fleet"])
        services.instance_set_operator_status(instance=instance, status=InstanceStatus.MAINTENANCE, actor="test")
        HealthCheck.objects.create(instance=instance, check_type="basic", status="healthy", score=0.9, checked_at=now)
        InstanceMetrics.objects.create(instance=instance, bucket_start=now, request_count=3)
        RequestLog.objects.create(request_id=f"req-{n}", instance=instance, status="success", created_at=now)
        ScalingEvent.objects.create(
            group=group, direction="up", trigger="manual", reason="test", old_count=1, new_count=2
        )
        LoadBalancerConfig.objects.create(provider_type="zai", model_name=f"model-{n}")


def add_data(**overrides: Any) -> dict[str, Any]:
    data = {
        "instance_name": "admin-zai",
        "provider_type": "zai",
        "model_name": "glm-4",
        "endpoint_url": "http://127.0.0.1:8001/v1",
        "region": "eu-west",
        "group": "",
        "new_api_key": KEY,
        "weight": "100",
        "priority": "0",
        "max_concurrent_requests": "10",
        "requests_per_minute": "",
        "tokens_per_minute": "",
        "temperature": "0.7",
        "max_tokens": "1000",
        "timeout": "30",
        "tags": '["prod"]',
        "metadata": "{}",
        "_save": "Save",
    }
    return {**data, **overrides}


def change_data(instance: AIInstance, **overrides: Any) -> dict[str, Any]:
    data = {
        "instance_name": instance.instance_name,
        "model_name": instance.model_name,
        "endpoint_url": instance.endpoint_url,
        "region": instance.region,
        "group": instance.group_id or "",
        "new_api_key": "",
        "weight": instance.weight,
        "priority": instance.priority,
        "max_concurrent_requests": instance.max_concurrent_requests,
        "requests_per_minute": instance.requests_per_minute or "",
        "tokens_per_minute": instance.tokens_per_minute or "",
        "temperature": instance.temperature,
        "max_tokens": instance.max_tokens,
        "timeout": instance.timeout,
        "tags": json.dumps(instance.tags),
        "metadata": json.dumps(instance.metadata),
        "_save": "Save",
    }
    return {**data, **overrides}


def change_url(instance: AIInstance) -> str:
    return reverse("admin:instances_aiinstance_change", args=[instance.pk])


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


# --- Changelists ---------------------------------------------------------------------


@pytest.mark.parametrize("changelist", CHANGELISTS)
def test_every_changelist_loads_in_a_query_count_that_does_not_grow_with_rows(operator, changelist):
    url = reverse(f"admin:{changelist}_changelist")
    make_fleet(3)
    operator.get(url)  # warm the per-process caches (content types) so both counts are alike
    with CaptureQueriesContext(connection) as few:
        response = operator.get(url)
    assert response.status_code == 200

    make_fleet(30, start=3)
    with CaptureQueriesContext(connection) as many:
        response = operator.get(url)

    assert response.status_code == 200
    assert response.context["cl"].result_count == 33
    assert len(many) == len(few)


def test_the_instance_changelist_shows_badges_load_and_score(operator):
    instance = register("zai-busy", max_concurrent_requests=10)
    services.instance_set_load(instance=instance, current_load=3)
    AIInstance.objects.filter(pk=instance.pk).update(health_score=0.93)

    page = operator.get(reverse("admin:instances_aiinstance_changelist")).content.decode()

    assert 'class="ism-badge ism-badge--starting"' in page
    assert "3 / 10" in page
    assert "30%" in page
    assert "0.93" in page
    assert "admin-extra/admin.css" in page
    assert KEY not in page


def test_the_custom_filters_find_unhealthy_and_overloaded_instances(operator):
    sick = register("sick")
    degraded = register("degraded")
    busy = register("busy", max_concurrent_requests=2)
    register("fine")
    services.instance_set_status(instance=sick, status=InstanceStatus.UNHEALTHY, reason="t", source="health_check")
    services.instance_set_status(instance=degraded, status=InstanceStatus.DEGRADED, reason="t", source="health_check")
    services.instance_set_load(instance=busy, current_load=2)
    url = reverse("admin:instances_aiinstance_changelist")

    unhealthy = operator.get(url, {"attention": "unhealthy"}).context["cl"].result_list
    overloaded = operator.get(url, {"load": "overloaded"}).context["cl"].result_list

    assert {i.instance_name for i in unhealthy} == {"sick", "degraded"}
    assert [i.instance_name for i in overloaded] == ["busy"]


@pytest.mark.parametrize("term", ["canary", "mistral-7b", "10.9.8.7"])
def test_search_covers_tags_model_and_endpoint(operator, term):
    register("wanted", tags=["canary"], model_name="mistral-7b", endpoint_url="http://10.9.8.7:8000/v1")
    register("other")

    found = operator.get(reverse("admin:instances_aiinstance_changelist"), {"q": term}).context["cl"].result_list

    assert [i.instance_name for i in found] == ["wanted"]


def test_search_finds_an_instance_by_its_instance_id(operator):
    wanted = register("wanted")
    register("other")

    found = operator.get(reverse("admin:instances_aiinstance_changelist"), {"q": str(wanted.instance_id)})

    assert [i.instance_name for i in found.context["cl"].result_list] == ["wanted"]


def test_provider_groups_show_their_active_instance_count(operator):
    group = ProviderGroup.objects.create(group_name="zai-prod", provider_type="zai")
    register("a", group_id=group.pk)
    register("b", group_id=group.pk)
    services.instance_deregister(instance=register("c", group_id=group.pk), actor="test")

    response = operator.get(reverse("admin:scaling_providergroup_changelist"))

    assert response.context["cl"].result_list[0].active_count == 2
    assert f"?group__id__exact={group.pk}&amp;is_active__exact=1" in response.content.decode()


# --- The change page and its history ----------------------------------------------------


def _add_history(instance: AIInstance, count: int, offset: int = 0) -> None:
    now = timezone.now()
    HealthCheck.objects.bulk_create(
        HealthCheck(
            instance=instance,
            check_type="basic",
            status="healthy",
            score=0.5,
            checked_at=now - timedelta(minutes=offset + n),
        )
        for n in range(count)
    )


def test_the_change_page_shows_only_the_newest_history_in_constant_queries(operator):
    instance = register()
    other = register("other")
    _add_history(instance, 3, offset=100)
    _add_history(other, 5)
    for status in (InstanceStatus.MAINTENANCE, InstanceStatus.DRAINING):
        services.instance_set_operator_status(instance=instance, status=status, actor="test")
    operator.get(change_url(instance))  # warm the per-process caches (content types)
    with CaptureQueriesContext(connection) as few:
        assert operator.get(change_url(instance)).status_code == 200

    _add_history(instance, 30)
    with CaptureQueriesContext(connection) as many:
        response = operator.get(change_url(instance))

    assert len(many) == len(few)
    formsets = {f.opts.model: f.formset for f in response.context["inline_admin_formsets"]}
    checks = list(formsets[HealthCheck].get_queryset())
    assert len(checks) == HISTORY_INLINE_ROWS
    assert {check.instance_id for check in checks} == {instance.pk}
    newest = HealthCheck.objects.filter(instance=instance).order_by("-checked_at")[:HISTORY_INLINE_ROWS]
    assert [c.pk for c in checks] == [c.pk for c in newest]
    assert len(formsets[StatusTransition].get_queryset()) == 2
    page = response.content.decode()
    assert f"Recent health checks (newest {HISTORY_INLINE_ROWS})" in page
    assert 'name="health_checks-0-score"' not in page  # read-only: no inputs, only the hidden ids
    assert 'name="transitions-0-reason"' not in page


def test_the_history_links_open_filtered_changelists(operator):
    instance = register()
    services.instance_set_operator_status(instance=instance, status=InstanceStatus.MAINTENANCE, actor="test")
    services.instance_set_operator_status(instance=register("other"), status=InstanceStatus.DRAINING, actor="test")
    page = operator.get(change_url(instance)).content.decode()
    for model in ("statustransition", "healthcheck", "requestlog", "instancemetrics"):
        url = f"{reverse(f'admin:instances_{model}_changelist')}?instance__id__exact={instance.pk}"
        assert url in page
        response = operator.get(url)
        assert response.status_code == 200, model  # an unknown lookup would redirect to ?e=1
    transitions = operator.get(
        reverse("admin:instances_statustransition_changelist"), {"instance__id__exact": instance.pk}
    )
    assert [t.instance_id for t in transitions.context["cl"].result_list] == [instance.pk]


def test_history_admins_are_read_only(operator):
    instance = register()
    _add_history(instance, 1)
    check = HealthCheck.objects.get()

    assert operator.get(reverse("admin:instances_healthcheck_add")).status_code == 403
    page = operator.get(reverse("admin:instances_healthcheck_change", args=[check.pk]))
    assert page.status_code == 200
    deleted = operator.post(reverse("admin:instances_healthcheck_delete", args=[check.pk]), {"post": "yes"})
    assert deleted.status_code == 403
    assert HealthCheck.objects.count() == 1


# --- The form: saves through the services, key write-only -----------------------------------


def test_adding_registers_through_the_service_and_encrypts_the_key(operator):
    response = operator.post(reverse("admin:instances_aiinstance_add"), add_data(), follow=True)

    assert response.status_code == 200
    stored = AIInstance.objects.get()
    assert (stored.instance_name, stored.status, stored.tags, stored.region) == (
        "admin-zai",
        InstanceStatus.STARTING,
        ["prod"],
        "eu-west",
    )
    assert stored.api_key_encrypted and KEY not in stored.api_key_encrypted
    assert crypto.decrypt(stored.api_key_encrypted) == KEY
    assert stored.api_key_last4 == "wxyz"
    assert KEY not in response.content.decode()
    change_page = operator.get(change_url(stored)).content.decode()
    assert KEY not in change_page
    assert "set, ends …wxyz" in change_page


def test_the_add_page_has_a_password_field_and_no_stored_key_field(operator):
    page = operator.get(reverse("admin:instances_aiinstance_add")).content.decode()

    assert 'type="password" name="new_api_key"' in page
    assert "api_key_encrypted" not in page
    assert "clear_api_key" not in page


def test_the_change_page_never_contains_the_key(operator):
    instance = register()

    page = operator.get(change_url(instance)).content.decode()

    assert KEY not in page
    assert instance.api_key_encrypted not in page
    assert "set, ends …wxyz" in page
    assert 'type="password" name="new_api_key"' in page
    assert 'value="' + KEY not in page


def test_an_instance_without_a_key_shows_where_its_key_comes_from(operator, settings):
    instance = register(api_key=None)
    settings.PROVIDER_API_KEYS = {**settings.PROVIDER_API_KEYS, "zai": ""}
    assert "not set" in operator.get(change_url(instance)).content.decode()

    settings.PROVIDER_API_KEYS = {**settings.PROVIDER_API_KEYS, "zai": "env-key-0000000000"}
    page = operator.get(change_url(instance)).content.decode()
    assert "from ZAI_API_KEY env" in page
    assert "env-key-0000000000" not in page


def test_set_new_key_replaces_the_key(operator):
    instance = register()
    before = instance.api_key_encrypted

    response = operator.post(change_url(instance), change_data(instance, new_api_key="replacement-key-00009876"))

    assert response.status_code == 302, response.content
    stored = AIInstance.objects.get()
    assert stored.api_key_encrypted != before
    assert crypto.decrypt(stored.api_key_encrypted) == "replacement-key-00009876"
    assert stored.api_key_last4 == "9876"


def test_a_blank_key_keeps_the_stored_key_while_other_fields_change(operator):
    instance = register()
    before = instance.api_key_encrypted

    response = operator.post(change_url(instance), change_data(instance, weight=7, tags='["canary"]'))

    assert response.status_code == 302, response.content
    stored = AIInstance.objects.get()
    assert (stored.weight, stored.tags) == (7, ["canary"])
    assert stored.api_key_encrypted == before


def test_clear_key_removes_it_and_cannot_be_combined_with_a_new_key(operator):
    instance = register()

    both = operator.post(change_url(instance), change_data(instance, new_api_key="x" * 20, clear_api_key="on"))
    assert both.status_code == 200
    assert "clear_api_key" in both.context["adminform"].form.errors
    assert AIInstance.objects.get().api_key_set

    response = operator.post(change_url(instance), change_data(instance, clear_api_key="on"))
    assert response.status_code == 302
    stored = AIInstance.objects.get()
    assert (stored.api_key_encrypted, stored.api_key_last4) == ("", "")


@pytest.mark.parametrize(
    "endpoint",
    ["http://169.254.169.254/latest", "ftp://example.com/v1", "http://metadata.google.internal/v1", "http://u:p@h/v1"],
)
def test_a_bad_endpoint_on_add_is_a_form_error_and_writes_nothing(operator, endpoint):
    response = operator.post(reverse("admin:instances_aiinstance_add"), add_data(endpoint_url=endpoint))

    assert response.status_code == 200
    assert "endpoint_url" in response.context["adminform"].form.errors
    assert AIInstance.objects.count() == 0
    assert KEY not in response.content.decode()


def test_a_bad_endpoint_on_change_is_a_form_error_and_changes_nothing(operator):
    instance = register()

    response = operator.post(
        change_url(instance),
        change_data(instance, endpoint_url="http://169.254.169.254/x", new_api_key="other-key-000000000000"),
    )

    assert response.status_code == 200
    assert "endpoint_url" in response.context["adminform"].form.errors
    stored = AIInstance.objects.get()
    assert (stored.endpoint_url, stored.api_key_encrypted) == (instance.endpoint_url, instance.api_key_encrypted)
    assert "other-key-000000000000" not in response.content.decode()


def test_a_duplicate_active_name_is_a_form_error_not_a_500(operator):
    register("taken")
    mine = register("mine")

    added = operator.post(reverse("admin:instances_aiinstance_add"), add_data(instance_name="taken"))
    renamed = operator.post(change_url(mine), change_data(mine, instance_name="taken"))

    for response in (added, renamed):
        assert response.status_code == 200
        assert "already exists" in " ".join(response.context["adminform"].form.errors["instance_name"])
    assert AIInstance.objects.filter(instance_name="taken").count() == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", "2.5"),
        ("max_concurrent_requests", "0"),
        ("timeout", "0"),
        ("tags", '"prod"'),
        ("metadata", "[1]"),
    ],
)
def test_out_of_range_values_are_form_errors(operator, field, value):
    response = operator.post(reverse("admin:instances_aiinstance_add"), add_data(**{field: value}))

    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert AIInstance.objects.count() == 0


def test_the_change_form_moves_groups_and_keeps_the_provider_read_only(operator):
    group = ProviderGroup.objects.create(group_name="g", provider_type="zai")
    instance = register()

    response = operator.post(change_url(instance), change_data(instance, group=group.pk, provider_type="openai"))

    assert response.status_code == 302
    stored = AIInstance.objects.get()
    assert (stored.group_id, stored.provider_type) == (group.pk, "zai")


def test_a_deregistered_instance_is_view_only_and_nothing_can_be_deleted(operator):
    instance = register()
    services.instance_deregister(instance=instance, actor="test")

    page = operator.get(change_url(instance))
    assert page.status_code == 200
    assert "new_api_key" not in page.content.decode()
    assert operator.post(change_url(instance), change_data(instance, weight=1)).status_code == 403
    assert operator.get(reverse("admin:instances_aiinstance_delete", args=[instance.pk])).status_code == 403
    assert AIInstance.objects.get().weight == 100


# --- Actions ------------------------------------------------------------------------------


def run_action(client: Client, action: str, instances: list[AIInstance], **extra: str) -> Any:
    return client.post(
        reverse("admin:instances_aiinstance_changelist"),
        {"action": action, "_selected_action": [i.pk for i in instances], **extra},
        follow=True,
    )


@pytest.mark.parametrize(
    ("action", "start", "expected"),
    [
        ("enable_instances", InstanceStatus.MAINTENANCE, InstanceStatus.STARTING),
        ("disable_instances", InstanceStatus.STARTING, InstanceStatus.STOPPED),
        ("maintenance_instances", InstanceStatus.STARTING, InstanceStatus.MAINTENANCE),
        ("drain_instances", InstanceStatus.STARTING, InstanceStatus.DRAINING),
    ],
)
def test_each_status_action_calls_the_service_and_records_a_transition(operator, admin_user, action, start, expected):
    first, second = register("a"), register("b")
    for instance in (first, second):
        services.instance_set_operator_status(instance=instance, status=start, actor="setup")
    StatusTransition.objects.all().delete()

    response = run_action(operator, action, [first, second])

    assert response.status_code == 200
    assert set(AIInstance.objects.values_list("status", flat=True)) == {expected}
    transitions = StatusTransition.objects.order_by("id")
    assert [(t.old_status, t.new_status, t.source) for t in transitions] == [(start, expected, "operator")] * 2
    assert all(t.reason == f"set by admin:{admin_user.username}" for t in transitions)
    assert any(message.startswith("2 instances ") for message in messages_of(response))


def test_an_action_reports_instances_already_in_the_status_and_deregistered_ones(operator):
    parked, fresh, gone = register("parked"), register("fresh"), register("gone")
    services.instance_set_operator_status(instance=parked, status=InstanceStatus.MAINTENANCE, actor="setup")
    services.instance_deregister(instance=gone, actor="setup")
    before = StatusTransition.objects.count()

    response = run_action(operator, "maintenance_instances", [parked, fresh, gone])

    assert AIInstance.objects.get(pk=fresh.pk).status == InstanceStatus.MAINTENANCE
    assert AIInstance.objects.get(pk=gone.pk).status == InstanceStatus.STOPPED
    assert StatusTransition.objects.count() == before + 1
    reported = messages_of(response)
    assert "1 instance set to maintenance." in reported
    assert "1 already maintenance; left as they were." in reported
    assert "1 deregistered instance(s) skipped." in reported


def test_enable_leaves_serving_instances_alone(operator):
    serving, parked = register("serving"), register("parked")
    services.instance_set_status(instance=serving, status=InstanceStatus.HEALTHY, reason="t", source="health_check")
    services.instance_set_operator_status(instance=parked, status=InstanceStatus.STANDBY, actor="setup")

    response = run_action(operator, "enable_instances", [serving, parked])

    assert AIInstance.objects.get(pk=serving.pk).status == InstanceStatus.HEALTHY
    assert AIInstance.objects.get(pk=parked.pk).status == InstanceStatus.STARTING
    assert StatusTransition.objects.filter(source="operator", new_status=InstanceStatus.STARTING).count() == 1
    assert "1 already enabled; left as they were." in messages_of(response)


def test_deregister_asks_for_confirmation_then_calls_the_service(operator):
    instance = register()

    confirm = run_action(operator, "deregister_instances", [instance])
    assert confirm.status_code == 200
    assert "Yes, deregister" in confirm.content.decode()
    assert AIInstance.objects.get().is_active

    response = run_action(operator, "deregister_instances", [instance], confirm="yes")

    stored = AIInstance.objects.get()
    assert (stored.is_active, stored.status) == (False, InstanceStatus.STOPPED)
    transition = StatusTransition.objects.get()
    assert (transition.new_status, transition.source) == (InstanceStatus.STOPPED, "operator")
    assert "1 instance deregistered." in messages_of(response)


def test_the_delete_action_is_not_offered(operator):
    register()
    actions = operator.get(reverse("admin:instances_aiinstance_changelist")).context["action_form"].fields["action"]
    names = [name for name, _ in actions.choices]
    assert "delete_selected" not in names
    assert {"enable_instances", "disable_instances", "maintenance_instances", "drain_instances"} <= set(names)


# --- Load balancer config -------------------------------------------------------------------------


def test_load_balancer_config_is_editable_and_validated(operator):
    url = reverse("admin:instances_loadbalancerconfig_add")
    data = {
        "provider_type": "zai",
        "model_name": "",
        "is_active": "on",
        "strategy": "least_connections",
        "failover_enabled": "on",
        "max_failover_attempts": 3,
        "max_ejection_share": 0.5,
        "health_check_interval": 30,
        "healthy_threshold": 2,
        "unhealthy_threshold": 3,
        "min_health_score": 0.0,
        "breaker_failure_threshold": 5,
        "breaker_failure_rate": 0.5,
        "breaker_min_calls": 10,
        "breaker_open_seconds": 60,
        "breaker_max_open_seconds": 30,
        "breaker_half_open_probes": 3,
        "session_ttl_seconds": 3600,
    }

    refused = operator.post(url, data)
    assert refused.status_code == 200
    assert LoadBalancerConfig.objects.count() == 0

    assert operator.post(url, {**data, "breaker_max_open_seconds": 300}).status_code == 302
    config = LoadBalancerConfig.objects.get()
    assert config.strategy == "least_connections"

    changelist = reverse("admin:instances_loadbalancerconfig_changelist")
    edited = operator.post(
        changelist,
        {
            "form-TOTAL_FORMS": 1,
            "form-INITIAL_FORMS": 1,
            "form-0-id": config.pk,
            "form-0-strategy": "round_robin",
            "_save": "Save",
        },
    )
    assert edited.status_code == 302
    assert LoadBalancerConfig.objects.get().strategy == "round_robin"
