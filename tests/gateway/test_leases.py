"""The source document's own flow with load accounting: select-instance takes a lease
(`lease: true`), the client calls the provider itself, POST .../release gives the lease back with
the outcome, which feeds the breaker, the latency estimate and the logs as a gateway request does."""

from __future__ import annotations

import time

import pytest

from gateway.load import LoadPublisher
from instances.balancer.state import get_state_store
from instances.models import AIInstance, RequestLog

pytestmark = pytest.mark.django_db

SELECT = "/api/instances/select-instance"


def take(client, **body):
    return client.post(SELECT, {"model_name": "sim-model", "lease": True, **body}, format="json")


def release(client, instance_id, **body):
    return client.post(f"/api/instances/{instance_id}/release", body, format="json")


def in_flight(instance: AIInstance) -> int:
    iid = str(instance.instance_id)
    return get_state_store().in_flight([iid], now=time.time())[iid]


def test_a_lease_counts_as_load_until_released_with_its_outcome(api_client, fleet):
    instance = fleet("lease-a")

    taken = take(api_client)

    assert taken.status_code == 200, taken.content
    body = taken.json()
    assert body["selected_instance"]["instance_name"] == "lease-a"
    assert body["lease_ttl_seconds"] == 15  # load_balancer.lease_ttl_seconds
    assert in_flight(instance) == 1
    LoadPublisher().publish_once()
    assert AIInstance.objects.get().current_load == 1  # what scaling, the dashboard and the metrics read

    done = release(api_client, instance.instance_id, lease_id=body["lease_id"], latency_ms=850.0,
                   prompt_tokens=300, completion_tokens=112)  # fmt: skip

    assert done.status_code == 200, done.content
    assert done.json() == {"released": True, "instance_id": str(instance.instance_id), "outcome": "success",
                           "breaker_event": None}  # fmt: skip
    assert in_flight(instance) == 0
    row = RequestLog.objects.get()
    assert (row.status, row.upstream_latency_ms, row.total_tokens, row.instance_id) == ("success", 850.0, 412,
                                                                                       instance.pk)  # fmt: skip
    metrics = api_client.get("/api/instances/load-balancer/metrics").json()
    (runtime,) = [i for i in metrics["instances"] if i["instance_id"] == str(instance.instance_id)]
    assert runtime["latency_ms"] == pytest.approx(850.0, rel=0.01)  # the client's latency fed the estimate


def test_a_lease_is_released_once_a_replay_records_nothing(api_client, fleet):
    instance = fleet("lease-once")
    lease_id = take(api_client).json()["lease_id"]
    assert release(api_client, instance.instance_id, lease_id=lease_id).status_code == 200

    again = release(api_client, instance.instance_id, lease_id=lease_id, success=False)

    assert again.status_code == 409, again.content
    assert "expired or was already released" in again.json()["detail"]
    assert RequestLog.objects.count() == 1


def test_a_lease_takes_capacity_so_a_full_instance_is_not_selected(api_client, fleet):
    fleet("lease-full", max_concurrent_requests=1)
    assert take(api_client).status_code == 200

    refused = take(api_client)

    assert refused.status_code == 503, refused.content
    assert refused.json()["code"] == "all_at_capacity"


def test_a_lease_not_released_lapses_at_its_ttl(api_client, fleet):
    instance = fleet("lease-lapse", max_concurrent_requests=1)
    lease_id = take(api_client, lease_ttl_seconds=1).json()["lease_id"]

    time.sleep(1.1)

    assert in_flight(instance) == 0
    assert take(api_client).status_code == 200  # the slot is free again
    late = release(api_client, instance.instance_id, lease_id=lease_id)
    assert late.status_code == 409


def test_failures_reported_on_release_open_the_breaker_as_gateway_failures_do(api_client, fleet):
    instance = fleet("lease-failing")
    for _ in range(5):  # the breaker's failure_threshold
        lease_id = take(api_client).json()["lease_id"]
        assert release(api_client, instance.instance_id, lease_id=lease_id, success=False,
                       error="server_error", latency_ms=20).status_code == 200  # fmt: skip

    refused = take(api_client)

    assert refused.status_code == 503
    assert refused.json()["code"] == "all_breaker_open"
    assert RequestLog.objects.filter(status="error").count() == 5


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"lease_id": "forged"}, "lease_id"),
        ({}, "lease_id"),
        ({"lease_id": "x", "success": True, "error": "timeout"}, "error"),
        ({"lease_id": "x", "error": "no-such-kind"}, "error"),
        ({"lease_id": "x", "latency_ms": -1}, "latency_ms"),
        ({"lease_id": "x", "surprise": 1}, "surprise"),
    ],
)
def test_a_bad_release_is_a_400_and_changes_nothing(api_client, fleet, body, field):
    instance = fleet("lease-bad")
    taken = take(api_client).json()
    if body.get("lease_id") == "x":
        body = {**body, "lease_id": taken["lease_id"]}

    response = release(api_client, instance.instance_id, **body)

    assert response.status_code == 400, response.content
    assert field in response.json()
    assert in_flight(instance) == 1 and not RequestLog.objects.exists()


def test_a_lease_cannot_be_released_on_another_instance(api_client, fleet):
    fleet("lease-one", max_concurrent_requests=1)
    other = fleet("lease-two", max_concurrent_requests=1)
    first = take(api_client).json()
    if first["selected_instance"]["instance_id"] == str(other.instance_id):
        other = AIInstance.objects.get(instance_name="lease-one")

    response = release(api_client, other.instance_id, lease_id=first["lease_id"])

    assert response.status_code == 400
    assert "another instance" in response.json()["lease_id"][0]
    assert release(api_client, "00000000-0000-0000-0000-000000000000", lease_id=first["lease_id"]).status_code == 404


def test_a_refused_key_reported_by_a_client_is_a_failure_not_an_unhealthy_instance(api_client, fleet):
    instance = fleet("lease-auth")
    lease_id = take(api_client).json()["lease_id"]

    done = release(api_client, instance.instance_id, lease_id=lease_id, success=False, error="auth")

    assert done.status_code == 200 and done.json()["outcome"] == "failure"
    instance.refresh_from_db()
    assert instance.status == "healthy"
    too_long = release(api_client, instance.instance_id, lease_id=take(api_client).json()["lease_id"],
                       success=False, error="rate_limited", retry_after=3600)  # fmt: skip
    assert too_long.status_code == 400 and "retry_after" in too_long.json()
