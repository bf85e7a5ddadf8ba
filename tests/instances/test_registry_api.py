"""The registry API: the seed's paths, bodies and error codes."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from instances.choices import InstanceStatus
from instances.models import AIInstance, StatusTransition
from scaling.models import ProviderGroup

pytestmark = pytest.mark.django_db


def register(client: APIClient, body: dict[str, Any], **changes: Any) -> Any:
    return client.post("/api/instances/register", {**body, **changes}, format="json")


def test_it_registers_the_seeds_body_and_answers_201_with_the_instance(api_client, registration):
    response = register(api_client, registration)

    assert response.status_code == 201, response.content
    body = response.json()
    uuid.UUID(body["instance_id"])
    assert body["provider_type"] == "zai"
    assert body["model_name"] == "glm-4"
    assert body["instance_name"] == "production-zai-1"
    assert body["endpoint_url"] == "https://api.zhipu.ai/v4"
    assert body["status"] == "starting"
    assert body["is_active"] is True
    assert body["max_concurrent_requests"] == 10
    assert body["api_key_set"] is True
    assert body["api_key_last4"] == "6789"
    assert "api_key" not in body
    stored = AIInstance.objects.get(instance_id=body["instance_id"])
    assert stored.api_key_encrypted and "your-api-key" not in stored.api_key_encrypted


def test_it_accepts_the_optional_fields(api_client, registration):
    group = ProviderGroup.objects.create(group_name="zai-production", provider_type="zai")
    response = register(
        api_client,
        registration,
        weight=0,
        priority=2,
        group_id=group.pk,
        region="eu-west",
        tags=["prod", "eu"],
        metadata={"owner": "team-a"},
        timeout=12.5,
        requests_per_minute=60,
        tokens_per_minute=10000,
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["weight"], body["priority"], body["group_id"], body["group_name"]) == (
        0,
        2,
        group.pk,
        "zai-production",
    )
    assert (body["region"], body["tags"], body["metadata"]) == ("eu-west", ["prod", "eu"], {"owner": "team-a"})
    assert (body["timeout"], body["requests_per_minute"], body["tokens_per_minute"]) == (12.5, 60, 10000)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"provider_type": "mistral"}, "provider_type"),
        ({"endpoint_url": "ftp://example.com/v1"}, "endpoint_url"),
        ({"endpoint_url": "file:///etc/passwd"}, "endpoint_url"),
        ({"endpoint_url": "http://169.254.169.254/latest"}, "endpoint_url"),
        ({"endpoint_url": "http://[fe80::1]/v1"}, "endpoint_url"),
        ({"endpoint_url": "http://metadata.google.internal/v1"}, "endpoint_url"),
        ({"endpoint_url": "http://user:pw@example.com/v1"}, "endpoint_url"),
        ({"max_concurrent_requests": -1}, "max_concurrent_requests"),
        ({"max_concurrent_requests": 0}, "max_concurrent_requests"),
        ({"max_tokens": -5}, "max_tokens"),
        ({"weight": -1}, "weight"),
        ({"timeout": -3}, "timeout"),
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"max_concurrent_requests": "ten"}, "max_concurrent_requests"),
        ({"tags": "prod"}, "tags"),
        ({"metadata": ["not", "a", "dict"]}, "metadata"),
        ({"group_id": 999999}, "group_id"),
        ({"max_token": 10}, "max_token"),
    ],
)
def test_bad_input_is_400_with_the_field_and_writes_nothing(api_client, registration, changes, field):
    response = register(api_client, registration, **changes)

    assert response.status_code == 400, response.content
    assert field in response.json()
    assert AIInstance.objects.count() == 0


@pytest.mark.parametrize("missing", ["provider_type", "model_name", "instance_name", "endpoint_url"])
def test_missing_required_fields_are_400(api_client, registration, missing):
    body = {k: v for k, v in registration.items() if k != missing}
    response = api_client.post("/api/instances/register", body, format="json")

    assert response.status_code == 400
    assert missing in response.json()
    assert AIInstance.objects.count() == 0


@pytest.mark.parametrize("raw", ["", "{not json", "[1, 2]", "null", '"text"'])
def test_empty_or_non_json_or_non_object_body_is_400(api_client, raw):
    response = api_client.post("/api/instances/register", raw, content_type="application/json")

    assert response.status_code == 400
    assert AIInstance.objects.count() == 0


def test_loopback_and_private_endpoints_stay_allowed(api_client, registration):
    first = register(api_client, registration, endpoint_url="http://127.0.0.1:8001/v1")
    second = register(api_client, registration, instance_name="vllm-2", endpoint_url="http://10.0.0.7:8000/v1/")
    third = register(api_client, registration, instance_name="vllm-3", endpoint_url="http://vllm:8000/v1")

    assert (first.status_code, second.status_code, third.status_code) == (201, 201, 201)
    assert second.json()["endpoint_url"] == "http://10.0.0.7:8000/v1"


def test_the_endpoint_allowlist_restricts_further(api_client, registration, settings):
    settings.ENDPOINT_ALLOWLIST = ["*.zhipu.ai", "10.0.0.0/8"]

    assert register(api_client, registration).status_code == 201
    assert register(api_client, registration, instance_name="b", endpoint_url="http://10.1.2.3/v1").status_code == 201
    refused = register(api_client, registration, instance_name="c", endpoint_url="http://127.0.0.1:9000/v1")
    assert refused.status_code == 400
    assert "allowlist" in refused.json()["endpoint_url"][0].lower()


def test_a_duplicate_active_name_is_409_but_a_deregistered_name_is_reusable(api_client, registration):
    first = register(api_client, registration).json()

    duplicate = register(api_client, registration)
    assert duplicate.status_code == 409
    assert AIInstance.objects.count() == 1

    assert api_client.delete(f"/api/instances/{first['instance_id']}").status_code == 204
    assert register(api_client, registration).status_code == 201


def test_list_filters_and_paginates(api_client, registration):
    for n in range(5):
        register(api_client, registration, instance_name=f"zai-{n}")
    register(api_client, registration, instance_name="oa", provider_type="openai", model_name="gpt-4o")

    everything = api_client.get("/api/instances").json()
    assert everything["count"] == 6
    zai_page = api_client.get("/api/instances?provider_type=zai&status=starting&limit=2&offset=1").json()
    assert zai_page["count"] == 5
    assert [row["instance_name"] for row in zai_page["results"]] == ["zai-1", "zai-2"]
    by_model = api_client.get("/api/instances?model_name=gpt-4o").json()
    assert [row["instance_name"] for row in by_model["results"]] == ["oa"]


@pytest.mark.parametrize(
    "query",
    ["provider_type=mistral", "status=sleepy", "limit=-1", "offset=-5", "limit=abc", "group_id=x", "nope=1"],
)
def test_bad_list_parameters_are_400(api_client, query):
    assert api_client.get(f"/api/instances?{query}").status_code == 400


def test_list_query_count_does_not_grow_with_rows(api_client, registration):
    group = ProviderGroup.objects.create(group_name="g", provider_type="zai")
    for n in range(3):
        register(api_client, registration, instance_name=f"small-{n}", group_id=group.pk)
    with CaptureQueriesContext(connection) as few:
        assert api_client.get("/api/instances").status_code == 200
    for n in range(30):
        register(api_client, registration, instance_name=f"big-{n}", group_id=group.pk)
    with CaptureQueriesContext(connection) as many:
        assert api_client.get("/api/instances").status_code == 200

    assert len(many) == len(few) <= 4


def test_get_patch_and_unknown_ids(api_client, registration):
    instance_id = register(api_client, registration).json()["instance_id"]

    assert api_client.get(f"/api/instances/{instance_id}").json()["instance_name"] == "production-zai-1"
    assert api_client.get(f"/api/instances/{uuid.uuid4()}").status_code == 404
    assert api_client.get("/api/instances/not-a-uuid").status_code == 404
    assert api_client.patch(f"/api/instances/{uuid.uuid4()}", {"weight": 5}, format="json").status_code == 404

    patched = api_client.patch(
        f"/api/instances/{instance_id}", {"weight": 0, "tags": ["canary"], "status": "maintenance"}, format="json"
    )
    assert patched.status_code == 200, patched.content
    assert (patched.json()["weight"], patched.json()["tags"], patched.json()["status"]) == (
        0,
        ["canary"],
        "maintenance",
    )
    transition = StatusTransition.objects.get()
    assert (transition.old_status, transition.new_status, transition.source) == ("starting", "maintenance", "operator")


def test_patch_rejects_bad_values_and_health_statuses_and_changes_nothing(api_client, registration):
    instance_id = register(api_client, registration).json()["instance_id"]

    for body in ({"temperature": 3}, {"status": "healthy"}, {"instance_id": str(uuid.uuid4())}, {"weight": "x"}):
        response = api_client.patch(f"/api/instances/{instance_id}", body, format="json")
        assert response.status_code == 400, body
    stored = AIInstance.objects.get()
    assert (stored.temperature, stored.status, stored.weight) == (0.7, InstanceStatus.STARTING, 100)


def test_patch_sets_a_new_key_and_moves_groups(api_client, registration):
    group = ProviderGroup.objects.create(group_name="g", provider_type="zai")
    instance_id = register(api_client, registration).json()["instance_id"]
    before = AIInstance.objects.get().api_key_encrypted

    body = api_client.patch(
        f"/api/instances/{instance_id}", {"api_key": "sk-new-key-00000000abcd", "group_id": group.pk}, format="json"
    ).json()

    assert (body["api_key_last4"], body["group_id"]) == ("abcd", group.pk)
    assert AIInstance.objects.get().api_key_encrypted != before


def test_put_load_sets_current_load(api_client, registration):
    instance_id = register(api_client, registration).json()["instance_id"]

    response = api_client.put(f"/api/instances/{instance_id}/load?current_load=5")
    assert response.status_code == 200
    assert response.json()["current_load"] == 5
    assert response.json()["utilization"] == 0.5
    assert api_client.put(f"/api/instances/{instance_id}/load?current_load=-1").status_code == 400
    assert api_client.put(f"/api/instances/{instance_id}/load").status_code == 400
    assert api_client.put(f"/api/instances/{instance_id}/load?current_load=x").status_code == 400
    assert AIInstance.objects.get().current_load == 5


def test_deregister_stops_routing_and_keeps_history(api_client, registration):
    instance_id = register(api_client, registration).json()["instance_id"]

    assert api_client.delete(f"/api/instances/{instance_id}").status_code == 204

    stored = AIInstance.objects.get()
    assert (stored.is_active, stored.status) == (False, InstanceStatus.STOPPED)
    assert stored.deregistered_at is not None
    assert api_client.get("/api/instances").json()["count"] == 0
    assert api_client.get("/api/instances?include_inactive=true").json()["count"] == 1
    assert api_client.get(f"/api/instances/{instance_id}").json()["is_active"] is False
    assert api_client.patch(f"/api/instances/{instance_id}", {"weight": 1}, format="json").status_code == 400
    assert api_client.delete(f"/api/instances/{uuid.uuid4()}").status_code == 404


def test_wrong_methods_are_405(api_client, registration):
    instance_id = register(api_client, registration).json()["instance_id"]

    assert api_client.get("/api/instances/register").status_code == 405
    assert api_client.post("/api/instances", {}, format="json").status_code == 405
    assert api_client.post(f"/api/instances/{instance_id}", {}, format="json").status_code == 405
    assert api_client.get(f"/api/instances/{instance_id}/load").status_code == 405


def test_system_status_counts_instances_and_components(api_client, registration):
    register(api_client, registration)
    second = register(api_client, registration, instance_name="b").json()
    api_client.patch(f"/api/instances/{second['instance_id']}", {"status": "maintenance"}, format="json")

    body = api_client.get("/api/instances/status").json()

    assert body["total_instances"] == 2
    assert body["instances_by_status"]["starting"] == 1
    assert body["instances_by_status"]["maintenance"] == 1
    assert body["instances_by_provider"]["zai"]["total"] == 2
    assert body["total_capacity"] == 20
    assert set(body["components"]) == {"database", "cache", "broker"}


def test_unknown_api_paths_answer_json_404(api_client):
    response = api_client.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.json()["detail"] == "Not found."


def test_the_detail_shows_the_shared_circuit_breaker(api_client, registration):
    import time

    from instances.balancer.breaker import BreakerConfig, Outcome
    from instances.balancer.candidates import Candidate
    from instances.balancer.state import get_state_store

    instance_id = register(api_client, registration).json()["instance_id"]
    assert api_client.get(f"/api/instances/{instance_id}").json()["breaker"]["phase"] == "closed"
    store, config = get_state_store(), BreakerConfig(failure_threshold=2)
    for _ in range(2):
        lease = store.begin(
            Candidate(instance_id=instance_id), pool="p", now=time.time(), breaker=config, lease_seconds=30
        )
        assert lease.lease is not None
        store.finish(
            lease.lease, outcome=Outcome.FAILURE, now=time.time(), breaker=config, pool_size=1, health_checks_agree=True
        )

    breaker = api_client.get(f"/api/instances/{instance_id}").json()["breaker"]

    assert breaker["phase"] == "open"
    assert breaker["open_until"] is not None
