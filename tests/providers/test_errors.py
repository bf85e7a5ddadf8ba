"""Every failure maps to one ProviderError kind, over real sockets against the simulator."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from instances.providers import ErrorKind, ProviderError, ProviderTarget, adapter_for
from instances.providers.transport import MAX_BODY_BYTES, parse_retry_after
from simulator.testing import SimulatorClient

from .support import MESSAGES, call, closed_port, collect, target_for

ALL_PROVIDERS = ["openai", "zai", "perplexity", "openai_compatible", "anthropic"]
KEY = "sk-secret-key-0123456789"


def chat_error(target: ProviderTarget, *, max_tokens: int = 5) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        call(lambda client: adapter_for(target.provider_type).chat(client, target, MESSAGES, max_tokens=max_tokens))
    return caught.value


@pytest.mark.parametrize("provider", ALL_PROVIDERS)
def test_a_reply_slower_than_the_timeout_is_a_timeout(sim_server: SimulatorClient, provider: str) -> None:
    sim_server.configure("slow", latency_ms=2000)

    error = chat_error(target_for(sim_server, "slow", provider, timeout=0.2))

    assert error.kind == ErrorKind.TIMEOUT
    assert error.retryable
    assert error.status_code is None


def test_a_refused_connection_is_a_connection_error() -> None:
    target = ProviderTarget("openai", f"http://127.0.0.1:{closed_port()}/v1", KEY, "sim-model", 2.0)

    error = chat_error(target)

    assert error.kind == ErrorKind.CONNECTION
    assert error.retryable


def test_a_connection_dropped_without_an_answer_is_a_connection_error(sim_server: SimulatorClient) -> None:
    sim_server.configure("gone", down=True)

    error = chat_error(target_for(sim_server, "gone", "openai"))

    assert error.kind == ErrorKind.CONNECTION
    assert sim_server.stats("gone")["by_status"] == {"dropped": 1}


@pytest.mark.parametrize("provider", ALL_PROVIDERS)
def test_a_wrong_key_is_an_auth_error_whose_message_never_shows_the_key(
    sim_server: SimulatorClient, provider: str
) -> None:
    sim_server.configure("a", required_api_key="sk-the-right-one")

    error = chat_error(target_for(sim_server, "a", provider, api_key=KEY))

    assert error.kind == ErrorKind.AUTH
    assert error.status_code == 401
    assert not error.retryable
    assert "Incorrect API key" in error.message
    assert KEY not in error.message
    assert KEY not in str(error)


def test_a_forbidden_key_is_an_auth_error(sim_server: SimulatorClient) -> None:
    sim_server.configure("a", required_api_key="sk-the-right-one", auth_failure_status=403)

    error = chat_error(target_for(sim_server, "a", "openai", api_key=KEY))

    assert (error.kind, error.status_code) == (ErrorKind.AUTH, 403)


def test_a_key_http_cannot_carry_is_refused_before_sending_without_echoing_it(sim_server: SimulatorClient) -> None:
    error = chat_error(target_for(sim_server, "a", "openai", api_key="sk-line\nbreak"))

    assert error.kind == ErrorKind.AUTH
    assert "sk-line" not in error.message
    assert sim_server.stats("a")["total"] == 0


@pytest.mark.parametrize("provider", ALL_PROVIDERS)
def test_an_unknown_model_is_not_found(sim_server: SimulatorClient, provider: str) -> None:
    sim_server.configure("a", models=["served-model"])

    error = chat_error(target_for(sim_server, "a", provider, model="no-such-model"))

    assert (error.kind, error.status_code) == (ErrorKind.NOT_FOUND, 404)
    assert "no-such-model" in error.message
    assert not error.retryable


def test_a_wrong_base_path_is_not_found(sim_server: SimulatorClient) -> None:
    target = ProviderTarget("openai", sim_server.root_url + "/nowhere/v1", KEY, "sim-model", 2.0)

    error = chat_error(target)

    assert (error.kind, error.status_code) == (ErrorKind.NOT_FOUND, 404)


@pytest.mark.parametrize(("provider", "retry_after"), [("openai", 2.5), ("zai", 2.5), ("anthropic", 3.0)])
def test_a_forced_429_is_rate_limited_with_its_retry_after(
    sim_server: SimulatorClient, provider: str, retry_after: float
) -> None:
    """OpenAI-shaped replies carry retry-after-ms (2500); Anthropic's only whole-second Retry-After (3)."""
    sim_server.configure("busy", failure_rate=1.0, failure_status=429, retry_after=2.5)

    error = chat_error(target_for(sim_server, "busy", provider))

    assert (error.kind, error.status_code) == (ErrorKind.RATE_LIMITED, 429)
    assert error.retry_after == retry_after
    assert error.retryable


def test_going_over_the_rate_limit_is_rate_limited_until_the_window_frees(sim_server: SimulatorClient) -> None:
    sim_server.configure("limited", rate_limit_rpm=1)
    target = target_for(sim_server, "limited", "openai")

    call(lambda client: adapter_for("openai").chat(client, target, MESSAGES, max_tokens=5))
    error = chat_error(target)

    assert error.kind == ErrorKind.RATE_LIMITED
    assert error.retry_after is not None
    assert 55.0 < error.retry_after <= 60.0


@pytest.mark.parametrize("provider", ALL_PROVIDERS)
@pytest.mark.parametrize("status", [500, 503, 529])
def test_a_5xx_is_a_retryable_server_error(sim_server: SimulatorClient, provider: str, status: int) -> None:
    sim_server.configure("broken", failure_rate=1.0, failure_status=status)

    error = chat_error(target_for(sim_server, "broken", provider))

    assert (error.kind, error.status_code) == (ErrorKind.SERVER_ERROR, status)
    assert error.message == "Simulated failure."
    assert error.retryable


def test_another_4xx_is_a_bad_request(sim_server: SimulatorClient) -> None:
    sim_server.configure("picky", failure_rate=1.0, failure_status=422)

    error = chat_error(target_for(sim_server, "picky", "openai"))

    assert (error.kind, error.status_code) == (ErrorKind.BAD_REQUEST, 422)
    assert not error.retryable


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_redirect_is_reported_and_never_followed(sim_server: SimulatorClient, provider: str) -> None:
    elsewhere = sim_server.base_url("elsewhere", provider)
    sim_server.configure("moved", redirect_to=elsewhere + "/chat/completions")

    error = chat_error(target_for(sim_server, "moved", provider))

    assert (error.kind, error.status_code) == (ErrorKind.REDIRECT, 307)
    assert "elsewhere" in error.message
    assert sim_server.stats("elsewhere")["total"] == 0


def test_a_reply_over_the_size_bound_is_too_large(sim_server: SimulatorClient) -> None:
    sim_server.configure("huge", content_bytes=MAX_BODY_BYTES + 1)

    error = chat_error(target_for(sim_server, "huge", "openai"))

    assert error.kind == ErrorKind.TOO_LARGE


def test_a_stream_event_over_the_size_bound_is_too_large(sim_server: SimulatorClient) -> None:
    sim_server.configure("huge", content_bytes=2 * 1024 * 1024, stream_chunks=1)
    target = target_for(sim_server, "huge", "openai")

    with pytest.raises(ProviderError) as caught:
        call(lambda client: collect(adapter_for("openai").stream_chat(client, target, MESSAGES, max_tokens=5)))

    assert caught.value.kind == ErrorKind.TOO_LARGE


@pytest.mark.parametrize("provider", ALL_PROVIDERS)
def test_a_reply_that_is_not_the_api_json_is_a_bad_response(sim_server: SimulatorClient, provider: str) -> None:
    sim_server.configure("proxy", malformed=True)

    error = chat_error(target_for(sim_server, "proxy", provider))

    assert error.kind == ErrorKind.BAD_RESPONSE
    assert not error.retryable


def test_a_listing_that_is_not_the_api_json_is_a_bad_response(sim_server: SimulatorClient) -> None:
    sim_server.configure("proxy", malformed=True)
    target = target_for(sim_server, "proxy", "openai_compatible")

    with pytest.raises(ProviderError) as caught:
        call(lambda client: adapter_for("openai_compatible").list_models(client, target))

    assert caught.value.kind == ErrorKind.BAD_RESPONSE


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_stream_that_fails_before_its_first_chunk_raises_on_first_iteration(
    sim_server: SimulatorClient, provider: str
) -> None:
    """The gateway relies on this to fail over before it has forwarded a byte."""
    sim_server.configure("broken", failure_rate=1.0)
    target = target_for(sim_server, "broken", provider)

    async def first_chunk(client: httpx.AsyncClient) -> object:
        return await anext(aiter(adapter_for(provider).stream_chat(client, target, MESSAGES, max_tokens=5)))

    with pytest.raises(ProviderError) as caught:
        call(first_chunk)

    assert caught.value.kind == ErrorKind.SERVER_ERROR


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_an_error_event_mid_stream_raises_after_the_chunks_already_yielded(
    sim_server: SimulatorClient, provider: str
) -> None:
    sim_server.configure("flaky", reply_tokens=8, stream_chunks=4, stream_error_after=2)
    target = target_for(sim_server, "flaky", provider)
    received: list[dict[str, Any]] = []

    async def consume(client: httpx.AsyncClient) -> None:
        async for chunk in adapter_for(provider).stream_chat(client, target, MESSAGES, max_tokens=50):
            received.append(chunk)

    with pytest.raises(ProviderError) as caught:
        call(consume)

    assert caught.value.kind == ErrorKind.SERVER_ERROR
    text = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in received if chunk["choices"])
    assert text == "the simulated provider answers"


def test_a_stream_slower_between_chunks_than_the_timeout_times_out(sim_server: SimulatorClient) -> None:
    sim_server.configure("trickle", stream_chunks=4, stream_chunk_delay_ms=1000)
    target = target_for(sim_server, "trickle", "openai", timeout=0.3)

    with pytest.raises(ProviderError) as caught:
        call(lambda client: collect(adapter_for("openai").stream_chat(client, target, MESSAGES, max_tokens=5)))

    assert caught.value.kind == ErrorKind.TIMEOUT


def test_retry_after_reads_an_http_date_relative_to_now() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    headers = httpx.Headers({"retry-after": "Thu, 01 Jan 2026 12:00:30 GMT"})

    assert parse_retry_after(headers, now) == 30.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "7", "retry-after-ms": "6500"}, 6.5),
        ({"retry-after": "Thu, 01 Jan 2026 11:59:00 GMT"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "-3"}, None),
        ({}, None),
    ],
)
def test_retry_after_prefers_milliseconds_and_ignores_nonsense(headers: dict[str, str], expected: float | None) -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)

    assert parse_retry_after(httpx.Headers(headers), now) == expected


def test_the_target_repr_never_shows_the_key() -> None:
    target = ProviderTarget("openai", "https://api.openai.com/v1", KEY, "gpt-4o-mini")

    assert KEY not in repr(target)


def test_a_provider_error_survives_pickling_for_celery() -> None:
    error = ProviderError(ErrorKind.RATE_LIMITED, "Slow down.", status_code=429, retry_after=2.5)

    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes

    assert (copy.kind, copy.message, copy.status_code, copy.retry_after) == (
        ErrorKind.RATE_LIMITED,
        "Slow down.",
        429,
        2.5,
    )
    assert str(copy) == "rate_limited (HTTP 429): Slow down."
