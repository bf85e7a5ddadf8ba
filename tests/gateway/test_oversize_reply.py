"""A provider reply over the transport's 4 MiB bound is the instance's fault: a breaker
failure and failover, and a 502 when no other instance can serve, never the client's 400."""

from __future__ import annotations

import pytest

from instances.providers.transport import MAX_BODY_BYTES
from tests.gateway.test_chat_completions import GatewayClient, new_gateway_client, sse_events

pytestmark = pytest.mark.django_db

FIVE_MIB = 5 * 1024 * 1024
assert FIVE_MIB > MAX_BODY_BYTES


@pytest.fixture
def gateway_client() -> GatewayClient:
    return new_gateway_client()


def test_an_oversized_reply_fails_over_and_counts_a_breaker_failure(gateway_client, fleet, sim_server):
    huge = fleet("a", priority=0)
    good = fleet("b", priority=1)
    sim_server.configure("a", content_bytes=FIVE_MIB)

    response = gateway_client.chat()

    assert response.status_code == 200, response.text[:300]
    assert response.headers["x-instance-id"] == str(good.instance_id)
    assert sim_server.stats("a")["total"] == 1
    assert gateway_client.breaker(huge).consecutive_failures == 1
    assert gateway_client.breaker(good).consecutive_failures == 0
    (row,) = gateway_client.logs()
    assert (row.status, row.attempts, row.original_instance_id) == ("success", 2, huge.pk)


def test_an_oversized_reply_with_nothing_else_to_serve_is_a_502(gateway_client, fleet, sim_server):
    huge = fleet("a")
    sim_server.configure("a", content_bytes=FIVE_MIB)

    response = gateway_client.chat()

    assert response.status_code == 502
    error = response.json()["error"]
    assert error["type"] == "upstream_error"
    assert [(t["instance"], t["error"]) for t in error["tried"]] == [("a", "too_large")]
    assert gateway_client.breaker(huge).consecutive_failures == 1


def test_an_oversized_stream_event_ends_the_stream_as_an_upstream_error(gateway_client, fleet, sim_server):
    huge = fleet("a")
    sim_server.configure("a", content_bytes=2 * 1024 * 1024, stream_chunks=1)  # one 2 MiB event, over 1 MiB

    response = gateway_client.chat(stream=True)

    events = sse_events(response)  # the role chunk came first: committed to `a`
    assert events[-1] == "[DONE]"
    assert events[-2]["error"]["code"] == "too_large"
    assert gateway_client.breaker(huge).consecutive_failures == 1
