"""Deadlines on the data path: the instance's timeout bounds a whole completion (and a stream
up to its first chunk), a stream is cut at its maximum duration, an in-flight lease lasts as
long as the attempt it guards, and a client that leaves is logged once as client_closed.

The simulated provider trickles (one reply byte every trickle_ms) or streams without end;
every read then arrives within the read timeout, so only a total deadline ends the call.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from instances.models import RequestLog
from tests.gateway import test_chat_completions, test_failover, test_streaming
from tests.gateway.test_chat_completions import MESSAGES, GatewayClient, sse_events
from tests.gateway.test_streaming import LiveGateway, wait_for

pytestmark = pytest.mark.django_db

live_gateway = test_streaming.live_gateway  # the gateway under a real uvicorn, in a thread
gateway_client = test_chat_completions.gateway_client  # the gateway in process, log rows written on flush()
configure = test_failover.configure  # configuration values through the environment layer

TRICKLE_MS = 150  # a reply of ~300 bytes takes ~45 s, every byte well within the read timeout
ENDLESS_STREAM = {"reply_tokens": 10_000, "stream_chunks": 10_000, "stream_chunk_delay_ms": 100}


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def stream(live_gateway: LiveGateway, *, give_up_after: float = 5.0) -> tuple[list, float]:
    """The events of one streamed completion and the seconds it took; the client stops
    reading after `give_up_after` seconds, so a stream that is never cut cannot hang the test."""
    body = {"model": "sim-model", "messages": MESSAGES, "stream": True}
    started = time.monotonic()
    lines: list[str] = []
    with live_gateway.client() as client, client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            lines.append(line)
            if time.monotonic() - started > give_up_after:
                break
    elapsed = time.monotonic() - started
    return sse_events(httpx.Response(200, text="\n".join(lines))), elapsed


# --- A completion has the instance's timeout, as a whole ----------------------------------


def test_a_trickling_provider_is_a_504_within_the_instance_timeout(gateway_client, fleet, sim_server):
    instance = fleet("a", timeout=2)
    sim_server.configure("a", trickle_ms=TRICKLE_MS)

    response, elapsed = timed(gateway_client.chat)

    assert response.status_code == 504, response.text
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert elapsed < 2.5
    assert gateway_client.breaker(instance).consecutive_failures == 1
    (row,) = gateway_client.logs()
    assert (row.status, row.status_code) == ("timeout", 504)


def test_a_trickling_provider_fails_over_to_a_healthy_instance(gateway_client, fleet, sim_server):
    fleet("a", priority=0, timeout=2)
    good = fleet("b", priority=1)
    sim_server.configure("a", trickle_ms=TRICKLE_MS)

    response, elapsed = timed(gateway_client.chat)

    assert response.status_code == 200, response.text
    assert response.headers["x-instance-id"] == str(good.instance_id)
    assert elapsed < 2.5
    (row,) = gateway_client.logs()
    assert (row.status, row.attempts, row.failover) == ("success", 2, True)


def test_a_stream_trickling_before_its_first_chunk_fails_over(gateway_client, fleet, sim_server):
    fleet("a", priority=0, timeout=1)
    good = fleet("b", priority=1)
    sim_server.configure("a", trickle_ms=TRICKLE_MS)

    response, elapsed = timed(lambda: gateway_client.chat(stream=True))

    assert response.status_code == 200
    assert response.headers["x-instance-id"] == str(good.instance_id)
    assert sse_events(response)[-1] == "[DONE]"
    assert elapsed < 1.5


# --- The lease lasts as long as the attempt ----------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_capped_instance_admits_no_second_request_while_the_first_runs(live_gateway: LiveGateway, fleet, sim_server):
    # The old lease lasted timeout + 30 s while a trickled reply ran for ~45 s: at 31 s a
    # second request got into an instance that takes one at a time.
    fleet("a", timeout=1, max_concurrent_requests=1)
    sim_server.configure("a", trickle_ms=TRICKLE_MS)
    body = {"model": "sim-model", "messages": MESSAGES}
    first: dict[str, float | int] = {}

    def send_first() -> None:
        with live_gateway.client(timeout=60) as client:
            first["status"] = client.post("/v1/chat/completions", json=body).status_code
        first["done"] = time.monotonic()

    thread = threading.Thread(target=send_first)
    thread.start()
    assert wait_for(lambda: sim_server.stats("a")["in_flight"] == 1)
    second: list[tuple[float, int | str]] = []  # when sent, what it got
    with live_gateway.client(timeout=0.5) as client:
        while thread.is_alive() and not any(answer != 503 for _, answer in second):
            sent = time.monotonic()
            try:
                answer: int | str = client.post("/v1/chat/completions", json=body).status_code
            except httpx.ReadTimeout:
                answer = "admitted"  # a refusal is immediate: this one reached the trickling provider
            second.append((sent, answer))
            time.sleep(0.05)
    thread.join(timeout=60)

    # Requests sent just as the first one ended may get in: its lease is released before it answers.
    while_running = [answer for sent, answer in second if sent < first["done"] - 0.2]
    assert while_running and set(while_running) == {503}, second
    assert first["status"] == 504


# --- A stream has a maximum duration -----------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_an_endless_stream_is_cut_at_the_instance_maximum_duration(live_gateway: LiveGateway, fleet, sim_server):
    instance = fleet("a", max_stream_seconds=1, max_tokens=10_000)
    sim_server.configure("a", **ENDLESS_STREAM)

    events, elapsed = stream(live_gateway)

    assert events[-1] == "[DONE]"
    error = events[-2]["error"]
    assert error["code"] == "timeout"
    assert "maximum duration of 1 s" in error["message"]
    assert 1.0 <= elapsed < 1.5
    assert len(events) > 3  # chunks were relayed until the cut
    assert GatewayClient.breaker(instance).consecutive_failures == 1
    assert wait_for(lambda: GatewayClient.in_flight(instance) == 0)
    live_gateway.gateway.log_buffer.flush()
    row = RequestLog.objects.get()
    assert (row.status, row.is_stream) == ("timeout", True)
    assert "maximum duration" in row.error


@pytest.mark.django_db(transaction=True)
def test_the_maximum_stream_duration_defaults_to_the_configuration(
    live_gateway: LiveGateway, fleet, sim_server, configure
):
    configure("LOAD_BALANCER__MAX_STREAM_SECONDS", 2)
    fleet("a", max_tokens=10_000)  # max_stream_seconds left empty
    sim_server.configure("a", **ENDLESS_STREAM)

    events, elapsed = stream(live_gateway)

    assert "maximum duration of 2 s" in events[-2]["error"]["message"]
    assert 2.0 <= elapsed < 2.5


# --- A client that leaves is logged once -------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_an_abandoned_completion_leaves_one_client_closed_row(live_gateway: LiveGateway, fleet, sim_server):
    instance = fleet("a")
    sim_server.configure("a", latency_ms=3000)
    body = {"model": "sim-model", "messages": MESSAGES}

    for _ in range(3):
        with live_gateway.client(timeout=0.3) as client, pytest.raises(httpx.ReadTimeout):
            client.post("/v1/chat/completions", json=body)

    def rows() -> list[RequestLog]:
        live_gateway.gateway.log_buffer.flush()
        return list(RequestLog.objects.order_by("pk"))

    assert wait_for(lambda: len(rows()) == 3)
    time.sleep(0.2)  # nothing more comes
    assert [(r.status, r.status_code, r.is_stream, r.instance_id) for r in rows()] == [
        ("client_closed", 499, False, instance.pk)
    ] * 3
    assert GatewayClient.in_flight(instance) == 0
