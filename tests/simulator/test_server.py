"""The simulated provider itself: control API, counters, provider shapes, failure modes, concurrency."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from simulator.testing import SimulatorClient

CHAT = {"model": "sim-model", "messages": [{"role": "user", "content": "Hello there, simulator."}], "max_tokens": 50}
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """One pooled client per test: a fresh connection per request would make request-heavy tests slow."""
    with httpx.Client(timeout=10.0) as client:
        yield client


def post_chat(
    http: httpx.Client, sim: SimulatorClient, name: str, body: dict[str, Any] | None = None, **kwargs: Any
) -> httpx.Response:
    return http.post(sim.base_url(name) + "/chat/completions", json=body or CHAT, **kwargs)


def wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


# Control API


def test_put_replaces_the_behaviour_and_get_reads_it(http: httpx.Client, sim_server: SimulatorClient) -> None:
    document = sim_server.configure("a", latency_ms=25, models=["m1"])
    assert document["behaviour"]["latency_ms"] == 25.0
    assert document["behaviour"]["models"] == ["m1"]

    document = sim_server.configure("a", failure_rate=0.5)

    read = http.get(sim_server.root_url + "/_control/instances/a").json()
    assert read == document
    assert read["behaviour"]["failure_rate"] == 0.5
    assert read["behaviour"]["latency_ms"] == 0.0  # replaced, not merged
    assert read["behaviour"]["models"] is None


def test_an_unseen_instance_reads_as_defaults_with_zero_counters(sim_server: SimulatorClient) -> None:
    stats = sim_server.stats("never-called")

    assert stats == {
        "total": 0,
        "by_status": {},
        "by_endpoint": {},
        "in_flight": 0,
        "max_in_flight": 0,
        "client_disconnects": 0,
        "last_request": None,
    }


def test_reset_forgets_behaviours_and_counters(http: httpx.Client, sim_server: SimulatorClient) -> None:
    sim_server.configure("a", failure_rate=1.0)
    post_chat(http, sim_server, "a")

    sim_server.reset()

    assert sim_server.stats("a")["total"] == 0
    assert post_chat(http, sim_server, "a").status_code == 200


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({"latency": 5}, "unknown fields ['latency']"),
        ({"failure_rate": 2}, "failure_rate must be within 0..1"),
        ({"latency_ms": "fast"}, "latency_ms must be float"),
        ({"stream_chunks": 2.5}, "stream_chunks must be int"),
        ({"down": 1}, "down must be bool"),
        ({"models": ["a", 3]}, "models must be list[str]"),
        ({"reply_tokens": None}, "reply_tokens may not be null"),
        ({"auth_failure_status": 500}, "auth_failure_status must be 401 or 403"),
    ],
)
def test_put_refuses_bad_behaviour_with_the_reason(
    sim_server: SimulatorClient, body: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ValueError) as caught:
        sim_server.configure("a", **body)

    assert complaint in str(caught.value)


def test_put_refuses_a_body_that_is_not_an_object(http: httpx.Client, sim_server: SimulatorClient) -> None:
    response = http.put(sim_server.root_url + "/_control/instances/a", content=b"[1, 2]")

    assert response.status_code == 400


def test_unknown_paths_are_404(http: httpx.Client, sim_server: SimulatorClient) -> None:
    assert http.get(sim_server.root_url + "/").status_code == 404
    assert http.get(sim_server.root_url + "/_control/elsewhere").status_code == 404
    assert http.get(sim_server.base_url("a") + "/embeddings").status_code == 404
    assert sim_server.stats("a")["by_endpoint"] == {"unknown": 1}


# Counters


def test_counters_record_totals_statuses_and_endpoints(http: httpx.Client, sim_server: SimulatorClient) -> None:
    post_chat(http, sim_server, "a")
    http.get(sim_server.base_url("a") + "/models")
    sim_server.configure("a", failure_rate=1.0, failure_status=503)
    post_chat(http, sim_server, "a")

    stats = sim_server.stats("a")

    assert stats["total"] == 3
    assert stats["by_status"] == {"200": 2, "503": 1}
    assert stats["by_endpoint"] == {"chat": 2, "models": 1}
    assert stats["last_request"]["body"] == CHAT
    assert "authorization" not in stats["last_request"]["headers"]


def test_in_flight_counts_overlapping_requests_and_returns_to_zero(sim_server: SimulatorClient) -> None:
    sim_server.configure("a", latency_ms=1000)
    seen_in_flight: list[int] = []

    async def scenario() -> list[int]:
        async with httpx.AsyncClient(timeout=10.0) as client:
            requests = [client.post(sim_server.base_url("a") + "/chat/completions", json=CHAT) for _ in range(5)]
            tasks = [asyncio.ensure_future(request) for request in requests]
            await asyncio.sleep(0.4)
            seen_in_flight.append(await asyncio.to_thread(lambda: sim_server.stats("a")["in_flight"]))
            return [response.status_code for response in await asyncio.gather(*tasks)]

    statuses = asyncio.run(scenario())

    assert statuses == [200] * 5
    assert seen_in_flight == [5]
    stats = sim_server.stats("a")
    assert (stats["in_flight"], stats["max_in_flight"]) == (0, 5)


def test_it_holds_a_thousand_slow_requests_at_once(sim_server: SimulatorClient) -> None:
    """No per-request threads: every request sleeps on the event loop, so all of them overlap.

    Raw sockets rather than httpx: opening a thousand connections must take far
    less than the latency, or early requests would finish before late ones start.
    """
    sim_server.configure("a", latency_ms=2000)
    host, port = sim_server.root_url.removeprefix("http://").split(":")
    request = f"GET /sim/a/v1/models HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()

    async def one() -> bytes:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(request)
        status_line = await reader.readline()
        writer.close()
        return status_line

    async def scenario() -> list[bytes]:
        return await asyncio.gather(*(one() for _ in range(1000)))

    assert set(asyncio.run(scenario())) == {b"HTTP/1.1 200 OK\r\n"}
    stats = sim_server.stats("a")
    assert stats["max_in_flight"] == 1000
    assert stats["by_status"] == {"200": 1000}


def test_a_client_that_gives_up_is_counted_and_leaves_no_request_in_flight(
    http: httpx.Client, sim_server: SimulatorClient
) -> None:
    sim_server.configure("a", latency_ms=5000)

    with pytest.raises(httpx.ReadTimeout):
        post_chat(http, sim_server, "a", timeout=0.2)

    wait_for(lambda: sim_server.stats("a")["client_disconnects"] == 1)
    stats = sim_server.stats("a")
    assert stats["in_flight"] == 0
    assert stats["by_status"] == {}


# Failure modes


def test_failure_rate_one_fails_everything_and_zero_nothing(http: httpx.Client, sim_server: SimulatorClient) -> None:
    sim_server.configure("bad", failure_rate=1.0)
    sim_server.configure("good", failure_rate=0.0)

    assert {post_chat(http, sim_server, "bad").status_code for _ in range(10)} == {500}
    assert {post_chat(http, sim_server, "good").status_code for _ in range(10)} == {200}


def test_failure_rate_fails_about_that_share(http: httpx.Client, sim_server: SimulatorClient) -> None:
    sim_server.configure("flaky", failure_rate=0.3)

    failures = sum(post_chat(http, sim_server, "flaky").status_code == 500 for _ in range(200))

    assert 30 <= failures <= 90  # 60 expected; far outside this is a broken rate, not bad luck


def test_the_rate_limit_answers_429_with_retry_after_once_the_window_is_full(
    http: httpx.Client, sim_server: SimulatorClient
) -> None:
    sim_server.configure("limited", rate_limit_rpm=3)

    statuses = [post_chat(http, sim_server, "limited") for _ in range(4)]

    assert [response.status_code for response in statuses] == [200, 200, 200, 429]
    assert 59 <= int(statuses[3].headers["retry-after"]) <= 60
    assert statuses[3].json()["error"]["code"] == "rate_limit_exceeded"


def test_a_forced_429_carries_the_configured_retry_after(http: httpx.Client, sim_server: SimulatorClient) -> None:
    sim_server.configure("busy", failure_rate=1.0, failure_status=429, retry_after=4)

    response = post_chat(http, sim_server, "busy")

    assert response.status_code == 429
    assert response.headers["retry-after"] == "4"
    assert response.headers["retry-after-ms"] == "4000"


def test_latency_delays_the_answer(http: httpx.Client, sim_server: SimulatorClient) -> None:
    sim_server.configure("slow", latency_ms=200)

    started = time.monotonic()
    post_chat(http, sim_server, "slow")

    assert time.monotonic() - started >= 0.2


def test_a_trickling_instance_sends_its_headers_at_once_and_its_body_a_byte_at_a_time(
    http: httpx.Client, sim_server: SimulatorClient
) -> None:
    sim_server.configure("trickle", trickle_ms=20, reply_tokens=1)

    started = time.monotonic()
    with http.stream("POST", sim_server.base_url("trickle") + "/chat/completions", json=CHAT) as response:
        headers_after = time.monotonic() - started
        pieces = list(response.iter_raw())
    body = b"".join(pieces)

    assert response.status_code == 200 and headers_after < 0.5
    assert time.monotonic() - started >= 0.02 * len(body) * 0.9
    assert len(pieces) > len(body) / 4  # arrives in many small reads, not as one body
    assert b"chat.completion" in body


def test_a_down_instance_drops_the_connection_without_a_status_line(
    http: httpx.Client, sim_server: SimulatorClient
) -> None:
    sim_server.configure("gone", down=True)

    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        post_chat(http, sim_server, "gone")

    assert sim_server.stats("gone")["by_status"] == {"dropped": 1}
    assert post_chat(http, sim_server, "up").status_code == 200


def test_a_wrong_key_is_refused_with_the_configured_status(http: httpx.Client, sim_server: SimulatorClient) -> None:
    sim_server.configure("locked", required_api_key="sk-right", auth_failure_status=403)

    wrong = post_chat(http, sim_server, "locked", headers={"authorization": "Bearer sk-wrong"})
    right = post_chat(http, sim_server, "locked", headers={"authorization": "Bearer sk-right"})

    assert (wrong.status_code, right.status_code) == (403, 200)


def test_a_redirect_points_elsewhere(http: httpx.Client, sim_server: SimulatorClient) -> None:
    sim_server.configure("moved", redirect_to="http://example.invalid/v1/chat/completions")

    response = post_chat(http, sim_server, "moved")

    assert response.status_code == 307
    assert response.headers["location"] == "http://example.invalid/v1/chat/completions"


# Provider shapes


def test_a_reply_carries_realistic_usage(http: httpx.Client, sim_server: SimulatorClient) -> None:
    sim_server.configure("a", reply_tokens=12)

    reply = post_chat(http, sim_server, "a").json()

    words = reply["choices"][0]["message"]["content"].split()
    assert len(words) == 12
    usage = reply["usage"]
    assert usage["completion_tokens"] == 12
    assert usage["prompt_tokens"] == 3 + 4 + 6  # framing + one message of 23 characters
    assert usage["total_tokens"] == usage["prompt_tokens"] + 12


def test_reasoning_mode_spends_the_budget_on_reasoning_content(http: httpx.Client, sim_server: SimulatorClient) -> None:
    sim_server.configure("thinker", reasoning_tokens=100)

    reply = post_chat(http, sim_server, "thinker", {**CHAT, "max_tokens": 8}).json()

    choice = reply["choices"][0]
    assert choice["message"]["content"] == ""
    assert len(choice["message"]["reasoning_content"].split()) == 8
    assert choice["finish_reason"] == "length"
    assert reply["usage"]["completion_tokens_details"]["reasoning_tokens"] == 8


def test_an_unserved_model_is_404(http: httpx.Client, sim_server: SimulatorClient) -> None:
    sim_server.configure("a", models=["only-this"])

    response = post_chat(http, sim_server, "a")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


def test_model_listings_take_the_shape_of_the_caller(http: httpx.Client, sim_server: SimulatorClient) -> None:
    sim_server.configure("a", models=["m1", "m2"])
    url = sim_server.base_url("a") + "/models"

    openai = http.get(url).json()
    anthropic = http.get(url, headers=ANTHROPIC_HEADERS).json()

    assert openai["object"] == "list"
    assert [model["id"] for model in openai["data"]] == ["m1", "m2"]
    assert anthropic["has_more"] is False
    assert [(model["type"], model["id"]) for model in anthropic["data"]] == [("model", "m1"), ("model", "m2")]


def test_an_openai_stream_is_sse_ending_with_done(http: httpx.Client, sim_server: SimulatorClient) -> None:
    sim_server.configure("a", reply_tokens=4, stream_chunks=2)

    response = post_chat(http, sim_server, "a", {**CHAT, "stream": True})

    assert response.headers["content-type"] == "text/event-stream"
    events = response.text.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    assert all(event.startswith("data: ") for event in events[:-1])
    assert '"usage"' in events[-3]  # without include_usage, usage rides on the finishing chunk


def test_slow_streams_pause_before_every_chunk(http: httpx.Client, sim_server: SimulatorClient) -> None:
    sim_server.configure("a", reply_tokens=4, stream_chunks=4, stream_chunk_delay_ms=100)

    started = time.monotonic()
    response = post_chat(http, sim_server, "a", {**CHAT, "stream": True})

    assert time.monotonic() - started >= 0.4
    assert response.text.count('"content":"') == 5  # the opening empty delta and four word chunks


def test_an_anthropic_stream_uses_anthropic_event_types_in_order(
    http: httpx.Client, sim_server: SimulatorClient
) -> None:
    sim_server.configure("claude", reply_tokens=2, stream_chunks=2)
    body = {"model": "sim-model", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], "stream": True}

    response = http.post(sim_server.base_url("claude") + "/messages", json=body, headers=ANTHROPIC_HEADERS)

    names = [line.removeprefix("event: ") for line in response.text.splitlines() if line.startswith("event: ")]
    assert names == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


@pytest.mark.parametrize(
    ("body", "headers", "complaint"),
    [
        ({"model": "m", "messages": [{"role": "user", "content": "hi"}]}, ANTHROPIC_HEADERS, "max_tokens"),
        (
            {"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]},
            ANTHROPIC_HEADERS,
            "messages.0.role",
        ),
        (
            {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], "n": 2},
            ANTHROPIC_HEADERS,
            "n: Extra inputs are not permitted",
        ),
        ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}, {}, "anthropic-version"),
    ],
)
def test_the_messages_endpoint_is_as_strict_as_anthropic(
    http: httpx.Client, sim_server: SimulatorClient, body: dict[str, Any], headers: dict[str, str], complaint: str
) -> None:
    response = http.post(sim_server.base_url("claude") + "/messages", json=body, headers=headers)

    assert response.status_code == 400
    error = response.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert complaint in error["error"]["message"]


def test_metrics_default_to_the_live_number_of_requests_in_flight(sim_server: SimulatorClient) -> None:
    sim_server.configure("vllm", latency_ms=1000, vllm_waiting=2)

    async def scenario() -> str:
        async with httpx.AsyncClient(timeout=10.0) as client:
            chats = [asyncio.ensure_future(client.post(sim_server.base_url("vllm") + "/chat/completions", json=CHAT))]
            chats.append(
                asyncio.ensure_future(client.post(sim_server.base_url("vllm") + "/chat/completions", json=CHAT))
            )
            await asyncio.sleep(0.4)
            sim_server_metrics = await client.get(sim_server.root_url + "/sim/vllm/metrics")
            await asyncio.gather(*chats)
            return sim_server_metrics.text

    text = asyncio.run(scenario())

    assert 'vllm:num_requests_running{engine="0",model_name="sim-model"} 2.0' in text
    assert 'vllm:num_requests_waiting{engine="0",model_name="sim-model"} 2.0' in text
    assert "# TYPE vllm:kv_cache_usage_perc gauge" in text


@pytest.mark.parametrize(
    ("provider", "path"),
    [
        ("openai", "/v1"),
        ("anthropic", "/v1"),
        ("openai_compatible", "/v1"),
        ("zai", "/api/paas/v4"),
        ("perplexity", ""),
    ],
)
def test_base_urls_mirror_each_providers_real_base_path(sim_server: SimulatorClient, provider: str, path: str) -> None:
    assert sim_server.base_url("x", provider) == f"{sim_server.root_url}/sim/x{path}"
