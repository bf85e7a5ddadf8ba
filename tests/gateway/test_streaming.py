"""Streamed completions: chunks relayed as server-sent events, failover only before the
first chunk, and a client that leaves releases its in-flight lease and the upstream call.

The disconnect tests run the gateway under a real uvicorn server in a thread
(transactional database, so the server's thread sees the rows) and hang up on
it with httpx, as a real client would.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from asgiref.sync import SyncToAsync
from django.conf import settings
from django.db import connections

from gateway.asgi import GatewayApp
from gateway.logbuffer import RequestLogBuffer
from gateway.proxy import Gateway
from instances.models import RequestLog
from tests.gateway.test_chat_completions import (
    MESSAGES,
    GatewayClient,
    new_gateway_client,
    sse_events,
    streamed_text,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def gateway_client() -> GatewayClient:
    return new_gateway_client()


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# --- Relaying -------------------------------------------------------------------


def test_a_stream_is_relayed_as_openai_chunks_ending_with_done(gateway_client, fleet, sim_server):
    instance = fleet("a")
    sim_server.configure("a", stream_chunks=4, reply_tokens=8)

    response = gateway_client.chat(stream=True)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-instance-id"] == str(instance.instance_id)
    assert float(response.headers["x-overhead-ms"]) >= 0
    events = sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert len(streamed_text(chunks).split()) == 8
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    # The client did not ask for usage: the provider's usage-only chunk is counted, not forwarded.
    assert all(chunk["choices"] for chunk in chunks)
    (row,) = gateway_client.logs()
    assert row.is_stream is True
    assert row.status == "success"
    assert row.completion_tokens == 8
    assert row.total_tokens > 8


def test_the_usage_chunk_is_forwarded_when_the_client_asks_for_it(gateway_client, fleet):
    fleet("a")

    response = gateway_client.chat(stream=True, stream_options={"include_usage": True})

    chunks = sse_events(response)[:-1]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] > 0


@pytest.mark.parametrize("provider", ["zai", "perplexity", "openai_compatible"])
def test_openai_shaped_providers_stream_and_their_usage_is_counted(gateway_client, fleet, provider):
    fleet("p", provider=provider, model="m")

    response = gateway_client.chat(model="m", stream=True)

    assert response.status_code == 200, response.text
    assert streamed_text(sse_events(response)[:-1])
    (row,) = gateway_client.logs()
    assert row.total_tokens > 0


# --- Failover before the first chunk, never after -------------------------------------


@pytest.mark.parametrize(
    "behaviour",
    [
        pytest.param({"failure_rate": 1.0, "failure_status": 500}, id="500"),
        pytest.param({"failure_rate": 1.0, "failure_status": 429, "retry_after": 5}, id="429"),
        pytest.param({"down": True}, id="connection-dropped"),
        pytest.param({"latency_ms": 3000}, id="timeout-before-first-chunk"),
    ],
)
def test_a_stream_fails_over_until_its_first_chunk(gateway_client, fleet, sim_server, behaviour):
    fleet("a", priority=0, timeout=0.3)
    good = fleet("b", priority=1)
    sim_server.configure("a", **behaviour)

    response = gateway_client.chat(stream=True)

    assert response.status_code == 200, response.text
    assert response.headers["x-instance-id"] == str(good.instance_id)
    assert sse_events(response)[-1] == "[DONE]"
    assert sim_server.stats("a")["total"] == sim_server.stats("b")["total"] == 1
    (row,) = gateway_client.logs()
    assert (row.failover, row.attempts, row.is_stream) == (True, 2, True)


def test_a_stream_that_breaks_after_its_first_chunk_ends_with_an_error_event_not_a_failover(
    gateway_client, fleet, sim_server
):
    broken = fleet("a", priority=0)
    fleet("b", priority=1)
    sim_server.configure("a", stream_chunks=8, stream_error_after=3)

    response = gateway_client.chat(stream=True)

    assert response.status_code == 200
    events = sse_events(response)
    assert events[-1] == "[DONE]"
    assert events[-2]["error"]["type"] == "upstream_error"
    assert events[-2]["error"]["code"] == "server_error"
    assert streamed_text(events[:-2])  # what arrived before the error was relayed
    assert sim_server.stats("b")["total"] == 0
    (row,) = gateway_client.logs()
    assert (row.status, row.status_code, row.attempts, row.failover) == ("error", 200, 1, False)
    assert "after the first chunk" in row.error
    assert gateway_client.breaker(broken).consecutive_failures == 1
    assert gateway_client.in_flight(broken) == 0


def test_an_anthropic_stream_error_event_ends_the_openai_stream(gateway_client, fleet, sim_server):
    fleet("claude", provider="anthropic", model="claude-x")
    sim_server.configure("claude", stream_error_after=2)

    events = sse_events(gateway_client.chat(model="claude-x", stream=True))

    assert events[-1] == "[DONE]"
    assert events[-2]["error"]["code"] == "server_error"
    assert "Overloaded" in events[-2]["error"]["message"]


def test_a_stream_with_every_upstream_down_is_a_plain_502(gateway_client, fleet, sim_server):
    fleet("a")
    sim_server.configure("a", failure_rate=1.0)

    response = gateway_client.chat(stream=True)

    assert response.status_code == 502
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["tried"][0]["instance"] == "a"


# --- Client disconnects, against a live server ----------------------------------------


@dataclass
class LiveGateway:
    url: str
    gateway: Gateway

    def client(self, *, timeout: float = 10.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {settings.BACKEND_API_KEY}"}
        return httpx.Client(base_url=self.url, headers=headers, trust_env=False, timeout=timeout)


@pytest.fixture
def live_gateway(transactional_db: None) -> Iterator[LiveGateway]:
    """The gateway's ASGI app under uvicorn on a free loopback port, in a thread of this process."""
    gateway = Gateway(log_buffer=RequestLogBuffer(background=False))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(GatewayApp(gateway=gateway), lifespan="off", log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    assert wait_for(lambda: server.started, timeout=10.0), "uvicorn did not start"
    try:
        yield LiveGateway(f"http://127.0.0.1:{port}", gateway)
    finally:
        server.should_exit = True
        thread.join(timeout=10.0)
        sock.close()
        # The server's database work ran in asgiref's thread-sensitive executor thread: close its
        # connection, or the test database cannot be dropped.
        SyncToAsync.single_thread_executor.submit(connections.close_all).result()


@pytest.mark.django_db(transaction=True)
def test_a_client_leaving_a_stream_releases_the_lease_and_the_upstream_call(live_gateway, fleet, sim_server):
    instance = fleet("a")
    sim_server.configure("a", stream_chunks=40, stream_chunk_delay_ms=100)
    body = {"model": "sim-model", "messages": MESSAGES, "stream": True}

    with live_gateway.client() as client, client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        lines = response.iter_lines()  # held: dropping the iterator would close the connection here
        first = next(line for line in lines if line.startswith("data: "))
        assert "chat.completion.chunk" in first
        assert GatewayClient.in_flight(instance) == 1
        assert sim_server.stats("a")["in_flight"] == 1
    # Leaving the block closes the connection mid-stream.

    assert wait_for(lambda: GatewayClient.in_flight(instance) == 0)
    assert wait_for(lambda: sim_server.stats("a")["in_flight"] == 0)
    assert sim_server.stats("a")["client_disconnects"] == 1
    live_gateway.gateway.log_buffer.flush()
    row = RequestLog.objects.get()
    assert (row.status, row.is_stream) == ("client_closed", True)


@pytest.mark.django_db(transaction=True)
def test_a_client_giving_up_on_a_completion_releases_the_lease_and_the_upstream_call(live_gateway, fleet, sim_server):
    instance = fleet("a")
    sim_server.configure("a", latency_ms=5000)
    body = {"model": "sim-model", "messages": MESSAGES}

    with live_gateway.client(timeout=0.5) as client, pytest.raises(httpx.ReadTimeout):
        client.post("/v1/chat/completions", json=body)

    assert wait_for(lambda: GatewayClient.in_flight(instance) == 0, timeout=2.0)
    assert wait_for(lambda: sim_server.stats("a")["in_flight"] == 0, timeout=2.0)
    assert sim_server.stats("a")["client_disconnects"] == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_streams_are_each_counted_in_flight_while_they_run(live_gateway, fleet, sim_server):
    instance = fleet("a", max_concurrent_requests=50)
    sim_server.configure("a", stream_chunks=10, stream_chunk_delay_ms=50)
    body = {"model": "sim-model", "messages": MESSAGES, "stream": True}
    results: list[str] = []

    def stream_one() -> None:
        with live_gateway.client(timeout=10) as client:
            response = client.post("/v1/chat/completions", json=body)
            results.append(response.text.rstrip().rsplit("\n", 1)[-1])

    threads = [threading.Thread(target=stream_one) for _ in range(8)]
    for thread in threads:
        thread.start()
    assert wait_for(lambda: GatewayClient.in_flight(instance) == 8)
    for thread in threads:
        thread.join()

    assert results == ["data: [DONE]"] * 8
    assert GatewayClient.in_flight(instance) == 0
    assert sim_server.stats("a")["max_in_flight"] == 8
