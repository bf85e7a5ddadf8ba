"""LoadBalancerConfig rows through the API and the admin: validated, unique per
(provider, model), written only through gateway.services, and applied to routing."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from gateway import services
from instances.models import LoadBalancerConfig
from ishchat.errors import ConflictError

pytestmark = pytest.mark.django_db

CONFIGS = "/api/instances/load-balancer/configs"


def detail(config_id: int) -> str:
    return f"{CONFIGS}/{config_id}"


def snapshot_of(config: LoadBalancerConfig) -> dict[str, Any]:
    return {field: getattr(config, field) for field in services.LB_CONFIG_FIELDS}


def test_a_config_is_created_read_listed_changed_and_deleted(api_client):
    created = api_client.post(
        CONFIGS,
        {
            "provider_type": "openai",
            "model_name": "gpt-4o",
            "strategy": "least_connections",
            "breaker_open_seconds": 10,
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["strategy"], body["breaker_open_seconds"], body["breaker_max_open_seconds"]) == (
        "least_connections",
        10,
        300,
    )
    config_id = body["id"]

    assert api_client.get(detail(config_id)).json() == body
    listed = api_client.get(CONFIGS).json()
    assert (listed["count"], listed["results"][0]["id"]) == (1, config_id)

    patched = api_client.patch(detail(config_id), {"strategy": "random", "min_health_score": 0.6}, format="json")
    assert patched.status_code == 200, patched.content
    stored = LoadBalancerConfig.objects.get(pk=config_id)
    assert (stored.strategy, stored.min_health_score, stored.breaker_open_seconds) == ("random", 0.6, 10)

    assert api_client.delete(detail(config_id)).status_code == 204
    assert not LoadBalancerConfig.objects.exists()
    assert api_client.get(detail(config_id)).status_code == 404


def test_a_blank_model_name_is_the_provider_wide_row(api_client):
    response = api_client.post(CONFIGS, {"provider_type": "zai"}, format="json")

    assert response.status_code == 201
    assert response.json()["model_name"] == ""
    assert str(LoadBalancerConfig.objects.get()) == "zai/*"


def test_a_second_config_for_the_same_scope_is_409_on_create_and_on_update(api_client):
    api_client.post(CONFIGS, {"provider_type": "openai", "model_name": "gpt-4o"}, format="json")
    other = api_client.post(CONFIGS, {"provider_type": "openai", "model_name": "gpt-4o-mini"}, format="json").json()

    duplicate = api_client.post(CONFIGS, {"provider_type": "openai", "model_name": "gpt-4o"}, format="json")
    moved = api_client.patch(detail(other["id"]), {"model_name": "gpt-4o"}, format="json")

    assert (duplicate.status_code, duplicate.json()["code"]) == (409, "conflict")
    assert moved.status_code == 409
    assert LoadBalancerConfig.objects.count() == 2
    assert LoadBalancerConfig.objects.get(pk=other["id"]).model_name == "gpt-4o-mini"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"breaker_open_seconds": 60, "breaker_max_open_seconds": 30}, "breaker_max_open_seconds"),
        ({"breaker_open_seconds": 600}, "breaker_max_open_seconds"),  # above the default 300 s cap
        ({"strategy": "fastest"}, "strategy"),
        ({"provider_type": "mistral"}, "provider_type"),
        ({"min_health_score": 1.5}, "min_health_score"),
        ({"breaker_failure_rate": 0}, "breaker_failure_rate"),
        ({"max_failover_attempts": 11}, "max_failover_attempts"),
        ({"breaker_half_open_probes": 0}, "breaker_half_open_probes"),
        ({"session_ttl_seconds": 10**12}, "session_ttl_seconds"),
        ({"health_check_interval": -1}, "health_check_interval"),
        ({"model_name": "x" * 201}, "model_name"),
        ({"surprise": True}, "surprise"),
    ],
)
def test_an_invalid_config_is_400_and_writes_nothing(api_client, body, field):
    response = api_client.post(CONFIGS, {"provider_type": "openai", "model_name": "gpt-4o", **body}, format="json")

    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not LoadBalancerConfig.objects.exists()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"breaker_max_open_seconds": 5}, "breaker_max_open_seconds"),  # below the stored open time (10)
        ({"breaker_open_seconds": 301}, "breaker_max_open_seconds"),  # above the stored cap (300)
        ({"strategy": None}, "strategy"),
        ({"id": 7}, "id"),
    ],
)
def test_an_invalid_change_is_400_and_leaves_the_row_as_it_was(api_client, changes, field):
    config = services.lb_config_create(provider_type="openai", model_name="gpt-4o", breaker_open_seconds=10)
    before = snapshot_of(config)

    response = api_client.patch(detail(config.pk), changes, format="json")

    assert response.status_code == 400, response.content
    assert field in response.json()
    config.refresh_from_db()
    assert snapshot_of(config) == before


def test_unknown_configs_are_404(api_client):
    assert api_client.get(detail(999_999)).status_code == 404
    assert api_client.patch(detail(999_999), {"strategy": "random"}, format="json").status_code == 404
    assert api_client.delete(detail(999_999)).status_code == 404


def test_a_read_only_key_reads_configs_but_may_not_write_them(read_only_client):
    config = services.lb_config_create(provider_type="openai", model_name="gpt-4o")

    assert read_only_client.get(CONFIGS).status_code == 200
    assert read_only_client.get(detail(config.pk)).status_code == 200
    assert read_only_client.post(CONFIGS, {"provider_type": "zai"}, format="json").status_code == 403
    assert read_only_client.patch(detail(config.pk), {"strategy": "random"}, format="json").status_code == 403
    assert read_only_client.delete(detail(config.pk)).status_code == 403
    assert LoadBalancerConfig.objects.get().strategy == config.strategy


def test_the_list_filters_by_provider_and_pages(api_client):
    for n in range(3):
        services.lb_config_create(provider_type="openai", model_name=f"m{n}")
    services.lb_config_create(provider_type="zai")

    openai = api_client.get(CONFIGS, {"provider_type": "openai", "limit": 2, "offset": 1}).json()

    assert (openai["count"], [row["model_name"] for row in openai["results"]]) == (3, ["m1", "m2"])
    assert api_client.get(CONFIGS, {"limit": 0}).status_code == 400


def test_the_list_runs_a_fixed_number_of_queries_whatever_the_rows(api_client):
    services.lb_config_create(provider_type="openai", model_name="m0")
    with CaptureQueriesContext(connection) as few:
        api_client.get(CONFIGS)
    for n in range(1, 30):
        services.lb_config_create(provider_type="openai", model_name=f"m{n}")
    with CaptureQueriesContext(connection) as many:
        response = api_client.get(CONFIGS)

    assert len(response.json()["results"]) == 30
    assert len(many) == len(few) == 2


def test_a_config_change_applies_to_the_next_selection(api_client, fleet):
    for name in "abc":
        fleet(name)
    select = {"provider_type": "openai", "model_name": "sim-model"}
    config = api_client.post(
        CONFIGS, {"provider_type": "openai", "model_name": "sim-model", "strategy": "round_robin"}, format="json"
    ).json()

    first = api_client.post("/api/instances/select-instance", select, format="json").json()
    api_client.patch(detail(config["id"]), {"strategy": "least_connections"}, format="json")
    second = api_client.post("/api/instances/select-instance", select, format="json").json()

    assert (first["strategy"], second["strategy"]) == ("round_robin", "least_connections")


def test_the_service_turns_a_lost_race_on_the_scope_into_a_conflict(monkeypatch):
    services.lb_config_create(provider_type="openai", model_name="gpt-4o")
    # As if another writer inserted the row between the check and the insert.
    monkeypatch.setattr(services, "_ensure_scope_free", lambda config: None)

    with pytest.raises(ConflictError):
        services.lb_config_create(provider_type="openai", model_name="gpt-4o")
    assert LoadBalancerConfig.objects.count() == 1


# --- admin ------------------------------------------------------------------------------


@pytest.fixture
def operator(admin_user: Any) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


ADMIN_FORM = {
    "provider_type": "zai",
    "model_name": "glm-4",
    "is_active": "on",
    "strategy": "weighted",
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
    "breaker_open_seconds": 30,
    "breaker_max_open_seconds": 300,
    "breaker_half_open_probes": 3,
    "session_ttl_seconds": 3600,
}


def test_the_admin_saves_configs_through_the_services(operator, monkeypatch):
    calls: list[str] = []
    for name in ("lb_config_create", "lb_config_update", "lb_config_delete"):
        original = getattr(services, name)

        def spy(*args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(services, name, spy)

    added = operator.post(reverse("admin:instances_loadbalancerconfig_add"), ADMIN_FORM)
    assert added.status_code == 302
    config = LoadBalancerConfig.objects.get()
    changed = operator.post(
        reverse("admin:instances_loadbalancerconfig_change", args=[config.pk]), {**ADMIN_FORM, "strategy": "random"}
    )
    assert changed.status_code == 302
    assert LoadBalancerConfig.objects.get().strategy == "random"
    deleted = operator.post(reverse("admin:instances_loadbalancerconfig_delete", args=[config.pk]), {"post": "yes"})
    assert deleted.status_code == 302

    assert calls == ["lb_config_create", "lb_config_update", "lb_config_delete"]
    assert not LoadBalancerConfig.objects.exists()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"breaker_open_seconds": 600}, "breaker_max_open_seconds"),
        ({"session_ttl_seconds": 10**9}, "session_ttl_seconds"),
    ],
)
def test_the_admin_shows_the_service_s_validation_as_form_errors(operator, changes, field):
    response = operator.post(reverse("admin:instances_loadbalancerconfig_add"), {**ADMIN_FORM, **changes})

    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert not LoadBalancerConfig.objects.exists()


def test_the_admin_refuses_a_duplicate_scope(operator):
    services.lb_config_create(provider_type="zai", model_name="glm-4")

    response = operator.post(reverse("admin:instances_loadbalancerconfig_add"), ADMIN_FORM)

    assert response.status_code == 200
    assert LoadBalancerConfig.objects.count() == 1


def test_every_config_write_moves_the_registry_version_so_gateways_reload(django_capture_on_commit_callbacks):
    from django.core.cache import cache

    from instances.services import REGISTRY_VERSION_KEY

    versions = []
    with django_capture_on_commit_callbacks(execute=True):
        config = services.lb_config_create(provider_type="openai", model_name="gpt-4o")
    versions.append(cache.get(REGISTRY_VERSION_KEY))
    with django_capture_on_commit_callbacks(execute=True):
        services.lb_config_update(config=config, changes={"strategy": "random"})
    versions.append(cache.get(REGISTRY_VERSION_KEY))
    with django_capture_on_commit_callbacks(execute=True):
        services.lb_config_delete(config=config)
    versions.append(cache.get(REGISTRY_VERSION_KEY))

    assert None not in versions
    assert len(set(versions)) == 3
