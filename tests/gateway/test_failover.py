"""Failover: a failing instance hands the request to another one, never the same twice;
an alias falls back to its next model; all-down answers name what was tried; every
attempt feeds the breaker, the latency estimate and the token limits.

Instance `a` (priority 0) is always selected first while eligible; `b`, `c`...
(priority 1) take over once it is excluded. The simulated provider's counters
say which instances were called.
"""

from __future__ import annotations

import json
import time

import pytest

from configuration.selectors import config_cache_clear
from instances.balancer.breaker import Phase
from instances.models import AIInstance, StatusTransition
from tests.gateway.test_chat_completions import GatewayClient, new_gateway_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def gateway_client() -> GatewayClient:
    return new_gateway_client()


@pytest.fixture
def configure(monkeypatch):
    """Set configuration values through the environment layer (INSTANCE_MANAGER_<SECTION>__<KEY>)."""

    def set_value(name: str, value: object) -> None:
        monkeypatch.setenv(f"INSTANCE_MANAGER_{name}", json.dumps(value) if not isinstance(value, str) else value)
        config_cache_clear()

    return set_value


def total(sim_server, name: str) -> int:
    return sim_server.stats(name)["total"]


@pytest.mark.parametrize(
    "behaviour",
    [
        pytest.param({"failure_rate": 1.0, "failure_status": 500}, id="500"),
        pytest.param({"failure_rate": 1.0, "failure_status": 503}, id="503"),
        pytest.param({"failure_rate": 1.0, "failure_status": 429, "retry_after": 30}, id="429"),
        pytest.param({"latency_ms": 3000}, id="timeout"),
        pytest.param({"down": True}, id="connection-dropped"),
    ],
)
def test_a_failing_instance_hands_the_request_to_another(gateway_client, fleet, sim_server, behaviour):
    fleet("a", priority=0, timeout=0.3)
    good = fleet("b", priority=1)
    sim_server.configure("a", **behaviour)

    response = gateway_client.chat()

    assert response.status_code == 200, response.text
    assert response.headers["x-instance-id"] == str(good.instance_id)
    assert total(sim_server, "a") == 1
    assert total(sim_server, "b") == 1


def test_a_refused_connection_fails_over(gateway_client, fleet, sim_server):
    fleet("a", priority=0)
    fleet("b", priority=1)
    AIInstance.objects.filter(instance_name="a").update(endpoint_url="http://127.0.0.1:9/v1")  # nothing listens

    response = gateway_client.chat()

    assert response.status_code == 200, response.text
    assert total(sim_server, "b") == 1


def test_the_request_log_names_the_original_instance_of_a_failover(gateway_client, fleet, sim_server):
    first = fleet("a", priority=0)
    second = fleet("b", priority=1)
    sim_server.configure("a", failure_rate=1.0, failure_status=500)

    gateway_client.chat()
    (row,) = gateway_client.logs()

    assert row.failover is True
    assert row.attempts == 2
    assert row.original_instance_id == first.pk
    assert row.instance_id == second.pk
    assert row.status == "success"


def test_each_attempt_goes_to_an_instance_not_tried_before(gateway_client, fleet, sim_server):
    names = ["a", "b", "c", "d", "e"]
    for name in names:
        fleet(name)
        sim_server.configure(name, failure_rate=1.0, failure_status=502)

    response = gateway_client.chat()

    calls = {name: total(sim_server, name) for name in names}
    assert response.status_code == 502
    assert sum(calls.values()) == 4  # the first try and max_failover_attempts (3) more
    assert max(calls.values()) == 1
    tried = response.json()["error"]["tried"]
    assert len({attempt["instance"] for attempt in tried}) == 4


def test_max_failover_attempts_comes_from_the_load_balancer_settings(gateway_client, fleet, sim_server, configure):
    configure("LOAD_BALANCER__MAX_FAILOVER_ATTEMPTS", 1)
    for name in "abc":
        fleet(name)
        sim_server.configure(name, failure_rate=1.0)

    response = gateway_client.chat()

    assert response.status_code == 502
    assert sum(total(sim_server, name) for name in "abc") == 2


def test_failover_disabled_means_one_attempt(gateway_client, fleet, sim_server, configure):
    configure("LOAD_BALANCER__FAILOVER_ENABLED", False)
    fleet("a", priority=0)
    fleet("b", priority=1)
    sim_server.configure("a", failure_rate=1.0)

    response = gateway_client.chat()

    assert response.status_code == 502
    assert total(sim_server, "b") == 0


def test_an_alias_falls_back_to_its_next_model(gateway_client, fleet, sim_server, configure):
    configure("LOAD_BALANCER__MODEL_ALIASES", {"smart": ["primary", "backup"]})
    fleet("p1", model="primary")
    fleet("p2", model="primary")
    fleet("spare", model="backup")
    sim_server.configure("p1", failure_rate=1.0)
    sim_server.configure("p2", failure_rate=1.0)

    response = gateway_client.chat(model="smart")

    assert response.status_code == 200, response.text
    assert total(sim_server, "p1") == total(sim_server, "p2") == total(sim_server, "spare") == 1
    assert sim_server.stats("spare")["last_request"]["body"]["model"] == "backup"
    (row,) = gateway_client.logs()
    assert row.model_name == "backup"
    assert row.attempts == 3


def test_an_alias_skips_a_model_with_no_eligible_instance(gateway_client, fleet, sim_server, configure):
    configure("LOAD_BALANCER__MODEL_ALIASES", {"smart": ["primary", "backup"]})
    fleet("p1", model="primary", status="unhealthy")
    fleet("spare", model="backup")

    response = gateway_client.chat(model="smart")

    assert response.status_code == 200
    assert total(sim_server, "p1") == 0


def test_a_bad_request_is_answered_at_once_not_retried(gateway_client, fleet, sim_server):
    fleet("a", priority=0)
    fleet("b", priority=1)
    sim_server.configure("a", failure_rate=1.0, failure_status=400)

    response = gateway_client.chat()

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"
    assert total(sim_server, "b") == 0


def test_a_refused_key_marks_that_instance_unhealthy_and_another_answers(gateway_client, fleet, sim_server):
    bad = fleet("a", priority=0, api_key="sk-wrong-key-0000000000")
    fleet("b", priority=1)
    sim_server.configure("a", required_api_key="sk-the-right-key-000000")

    first = gateway_client.chat()
    second = gateway_client.chat()

    assert first.status_code == second.status_code == 200
    bad.refresh_from_db()
    assert bad.status == "unhealthy"
    transition = StatusTransition.objects.get(instance=bad)
    assert transition.source == "breaker"
    assert "sk-wrong" not in transition.reason
    assert total(sim_server, "a") == 1  # out of rotation after the first refusal


# --- Everything down ------------------------------------------------------------


def test_all_upstreams_failing_is_a_502_naming_each_attempt(gateway_client, fleet, sim_server):
    fleet("a", priority=0, timeout=0.3)
    fleet("b", priority=1)
    sim_server.configure("a", latency_ms=3000)
    sim_server.configure("b", failure_rate=1.0, failure_status=500)

    response = gateway_client.chat()

    assert response.status_code == 502
    error = response.json()["error"]
    assert error["type"] == "upstream_error"
    assert error["code"] == "upstream_failed"
    assert [(t["instance"], t["error"], t["status_code"]) for t in error["tried"]] == [
        ("a", "timeout", None),
        ("b", "server_error", 500),
    ]
    assert "a (openai/sim-model): timeout" in error["message"]
    assert "b (openai/sim-model): server_error HTTP 500" in error["message"]
    assert response.headers["x-request-id"]
    (row,) = gateway_client.logs()
    assert (row.status, row.status_code, row.attempts) == ("error", 502, 2)


def test_all_rate_limited_says_when_to_retry(gateway_client, fleet, sim_server):
    fleet("a")
    sim_server.configure("a", failure_rate=1.0, failure_status=429, retry_after=7)

    response = gateway_client.chat()

    assert response.status_code == 502
    assert response.headers["retry-after"] == "7"


@pytest.mark.parametrize(
    ("status", "code"),
    [("unhealthy", "all_unhealthy"), ("maintenance", "all_not_serving")],
)
def test_nothing_eligible_is_a_503_with_the_balancers_reason(gateway_client, fleet, sim_server, status, code):
    fleet("a", status=status)
    fleet("b", status=status)

    response = gateway_client.chat()

    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == code
    assert error["tried"] == []
    assert "sim-model" in error["message"]
    assert total(sim_server, "a") == total(sim_server, "b") == 0


# --- Feeding the breaker, the latency estimate and the limits -------------------


def test_a_breaker_opens_after_repeated_failures_and_later_requests_skip_the_instance(
    gateway_client, fleet, sim_server
):
    broken = fleet("a", priority=0)
    fleet("b", priority=1)
    sim_server.configure("a", failure_rate=1.0, failure_status=500)

    for _ in range(8):
        assert gateway_client.chat().status_code == 200

    assert gateway_client.breaker(broken).phase is Phase.OPEN
    assert total(sim_server, "a") == 5  # the breaker's failure_threshold
    assert total(sim_server, "b") == 8


def test_a_429_cools_the_instance_for_its_retry_after(gateway_client, fleet, sim_server):
    throttled = fleet("a", priority=0)
    fleet("b", priority=1)
    sim_server.configure("a", failure_rate=1.0, failure_status=429, retry_after=30)

    gateway_client.chat()
    gateway_client.chat()

    assert total(sim_server, "a") == 1
    assert gateway_client.breaker(throttled).cooling_until == pytest.approx(time.time() + 30, abs=3)


def test_every_attempt_leaves_the_in_flight_count_where_it_was_and_feeds_the_latency(gateway_client, fleet, sim_server):
    from instances.balancer.breaker import BreakerConfig
    from instances.balancer.state import get_state_store

    instance = fleet("a")
    sim_server.configure("a", latency_ms=30)

    gateway_client.chat()

    assert gateway_client.in_flight(instance) == 0
    candidate = gateway_client.gateway.routing._context.snapshot.by_id[str(instance.instance_id)].candidate
    latency_ms = (
        get_state_store()
        .snapshot([candidate], now=time.time(), breaker=BreakerConfig())[str(instance.instance_id)]
        .latency_ms
    )
    assert latency_ms is not None and latency_ms >= 30


def test_tokens_used_count_against_the_instances_token_limit(gateway_client, fleet, sim_server):
    fleet("a", priority=0, tokens_per_minute=20)
    fleet("b", priority=1)
    sim_server.configure("a", reply_tokens=30)

    first = gateway_client.chat()
    gateway_client.chat()

    assert first.json()["usage"]["total_tokens"] > 20
    assert total(sim_server, "a") == 1  # over its tokens per minute after the first reply
    assert total(sim_server, "b") == 1


def test_the_shared_state_can_be_used_from_a_worker_thread(fleet, sim_server):
    from gateway.logbuffer import RequestLogBuffer
    from gateway.proxy import Gateway

    client = GatewayClient(Gateway(log_buffer=RequestLogBuffer(background=False), state_in_thread=True))
    broken = fleet("a", priority=0)
    good = fleet("b", priority=1)
    sim_server.configure("a", failure_rate=1.0)

    response = client.chat()

    assert response.headers["x-instance-id"] == str(good.instance_id)
    assert client.breaker(broken).consecutive_failures == 1
    assert client.in_flight(broken) == client.in_flight(good) == 0
