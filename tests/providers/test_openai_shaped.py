"""The OpenAI-shaped adapters (OpenAI, ZAI, Perplexity, self-hosted) against the simulator over loopback."""

from __future__ import annotations

import pytest

from instances.providers import ProviderTarget, adapter_for
from instances.providers.openai import parse_chat_completion
from instances.providers.perplexity import PerplexityAdapter
from simulator.testing import SimulatorClient

from .support import MESSAGES, call, collect, target_for

OPENAI_SHAPED = ["openai", "zai", "perplexity", "openai_compatible"]
LISTING = ["openai", "zai", "openai_compatible"]


@pytest.mark.parametrize("provider", OPENAI_SHAPED)
def test_chat_returns_the_reply_text_usage_and_finish_reason(sim_server: SimulatorClient, provider: str) -> None:
    sim_server.configure("a", reply_tokens=4)
    target = target_for(sim_server, "a", provider)

    result = call(lambda client: adapter_for(provider).chat(client, target, MESSAGES, max_tokens=50))

    assert result.content == "the simulated provider answers"
    assert result.finish_reason == "stop"
    assert result.usage.completion_tokens == 4
    assert result.usage.prompt_tokens > 0
    assert result.usage.total_tokens == result.usage.prompt_tokens + 4
    assert result.model == "sim-model"
    assert not result.reasoning
    assert result.raw is result.openai_response
    assert result.latency_ms > 0
    assert sim_server.stats("a")["by_endpoint"] == {"chat": 1}


@pytest.mark.parametrize("provider", OPENAI_SHAPED)
def test_chat_cut_by_max_tokens_reports_length(sim_server: SimulatorClient, provider: str) -> None:
    sim_server.configure("a", reply_tokens=10)
    target = target_for(sim_server, "a", provider)

    result = call(lambda client: adapter_for(provider).chat(client, target, MESSAGES, max_tokens=3))

    assert result.finish_reason == "length"
    assert result.usage.completion_tokens == 3
    assert not result.reasoning_only


@pytest.mark.parametrize(
    ("provider", "field"),
    [
        ("openai", "max_completion_tokens"),
        ("zai", "max_tokens"),
        ("perplexity", "max_tokens"),
        ("openai_compatible", "max_tokens"),
    ],
)
def test_chat_sends_the_max_tokens_field_each_provider_accepts(
    sim_server: SimulatorClient, provider: str, field: str
) -> None:
    target = target_for(sim_server, "a", provider)

    call(
        lambda client: adapter_for(provider).chat(
            client, target, MESSAGES, max_tokens=7, temperature=0.2, extra={"top_p": 0.9, "max_tokens": 99}
        )
    )

    body = sim_server.stats("a")["last_request"]["body"]
    assert body[field] == 7
    other_field = ({"max_tokens", "max_completion_tokens"} - {field}).pop()
    assert other_field not in body
    assert body["temperature"] == 0.2
    assert body["top_p"] == 0.9
    assert body["model"] == "sim-model"
    assert body["messages"] == MESSAGES
    assert body["stream"] is False


@pytest.mark.parametrize("provider", OPENAI_SHAPED)
def test_the_key_is_sent_as_a_bearer_token(sim_server: SimulatorClient, provider: str) -> None:
    sim_server.configure("a", required_api_key="sk-right-key")
    target = target_for(sim_server, "a", provider, api_key="sk-right-key")

    result = call(lambda client: adapter_for(provider).chat(client, target, MESSAGES, max_tokens=5))

    assert result.content
    assert sim_server.stats("a")["by_status"] == {"200": 1}


@pytest.mark.parametrize("provider", LISTING)
def test_list_models_returns_the_served_ids(sim_server: SimulatorClient, provider: str) -> None:
    sim_server.configure("a", models=["model-a", "model-b"])
    target = target_for(sim_server, "a", provider, model="model-a")

    listing = call(lambda client: adapter_for(provider).list_models(client, target))

    assert listing.ids == ("model-a", "model-b")
    assert listing.latency_ms > 0
    assert sim_server.stats("a")["by_endpoint"] == {"models": 1}


def test_perplexity_declares_no_listing_and_never_calls_one(sim_server: SimulatorClient) -> None:
    adapter = adapter_for("perplexity")
    target = target_for(sim_server, "a", "perplexity")

    assert adapter.supports_model_listing is False
    with pytest.raises(NotImplementedError):
        call(lambda client: adapter.list_models(client, target))
    assert sim_server.stats("a")["total"] == 0


def test_perplexity_probe_is_a_one_token_chat(sim_server: SimulatorClient) -> None:
    target = target_for(sim_server, "a", "perplexity")

    result = call(lambda client: adapter_for("perplexity").chat(client, target, MESSAGES[1:], max_tokens=1))

    assert result.usage.completion_tokens == 1
    assert sim_server.stats("a")["last_request"]["body"]["max_tokens"] == 1


@pytest.mark.parametrize("provider", OPENAI_SHAPED)
def test_stream_yields_openai_chunks_and_ends_with_usage(sim_server: SimulatorClient, provider: str) -> None:
    sim_server.configure("a", reply_tokens=6, stream_chunks=3)
    target = target_for(sim_server, "a", provider)

    chunks = call(lambda client: collect(adapter_for(provider).stream_chat(client, target, MESSAGES, max_tokens=50)))

    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(choice["delta"].get("content", "") for chunk in chunks for choice in chunk["choices"])
    assert text == "the simulated provider answers with plain"
    finishes = [choice["finish_reason"] for chunk in chunks for choice in chunk["choices"] if choice["finish_reason"]]
    assert finishes == ["stop"]
    assert chunks[-1]["usage"]["completion_tokens"] == 6
    assert chunks[-1]["usage"]["total_tokens"] == chunks[-1]["usage"]["prompt_tokens"] + 6


@pytest.mark.parametrize(("provider", "asks"), [("openai", True), ("openai_compatible", True), ("zai", False)])
def test_stream_asks_for_usage_only_where_the_provider_needs_asking(
    sim_server: SimulatorClient, provider: str, asks: bool
) -> None:
    target = target_for(sim_server, "a", provider)

    call(lambda client: collect(adapter_for(provider).stream_chat(client, target, MESSAGES, max_tokens=5)))

    body = sim_server.stats("a")["last_request"]["body"]
    assert body["stream"] is True
    assert ("stream_options" in body) is asks


@pytest.mark.parametrize("provider", ["openai", "zai", "openai_compatible"])
def test_a_reply_that_spent_its_budget_thinking_is_flagged_not_failed(
    sim_server: SimulatorClient, provider: str
) -> None:
    sim_server.configure("a", reasoning_tokens=50)
    target = target_for(sim_server, "a", provider)

    result = call(lambda client: adapter_for(provider).chat(client, target, MESSAGES, max_tokens=5))

    assert result.content == ""
    assert result.finish_reason == "length"
    assert result.reasoning
    assert result.reasoning_only
    assert result.usage.reasoning_tokens == 5
    assert result.usage.completion_tokens == 5


def test_a_reasoning_reply_with_budget_left_has_content_and_is_not_reasoning_only(
    sim_server: SimulatorClient,
) -> None:
    sim_server.configure("a", reasoning_tokens=4, reply_tokens=3)
    target = target_for(sim_server, "a", "zai")

    result = call(lambda client: adapter_for("zai").chat(client, target, MESSAGES, max_tokens=100))

    assert result.content == "the simulated provider"
    assert result.finish_reason == "stop"
    assert result.reasoning
    assert not result.reasoning_only
    assert result.openai_response["choices"][0]["message"]["reasoning_content"]


def test_streamed_reasoning_arrives_as_reasoning_content_deltas(sim_server: SimulatorClient) -> None:
    sim_server.configure("a", reasoning_tokens=20)
    target = target_for(sim_server, "a", "openai_compatible")

    chunks = call(
        lambda client: collect(adapter_for("openai_compatible").stream_chat(client, target, MESSAGES, max_tokens=4))
    )

    deltas = [choice["delta"] for chunk in chunks for choice in chunk["choices"]]
    thinking = "".join(delta.get("reasoning_content", "") for delta in deltas)
    assert len(thinking.split()) == 4
    assert "".join(delta.get("content", "") for delta in deltas) == ""
    assert chunks[-1]["usage"]["completion_tokens_details"]["reasoning_tokens"] == 4


@pytest.mark.parametrize(
    ("content", "visible", "reasoning_only"),
    [
        ("<think>Weighing the options", "", True),
        ("<think>Done.</think>\n\nHello.", "Hello.", False),
        ("Hello.", "Hello.", False),
    ],
)
def test_perplexity_inline_thinking_is_separated_from_the_answer(
    content: str, visible: str, reasoning_only: bool
) -> None:
    adapter = PerplexityAdapter()
    target = ProviderTarget("perplexity", "https://api.perplexity.ai", "", "sonar-reasoning")
    data = {
        "model": "sonar-reasoning",
        "choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 5},
    }
    result = parse_chat_completion(target, data, 1.0, split_reasoning=adapter.split_reasoning)

    assert result.content == visible
    assert result.reasoning_only is reasoning_only
    assert result.usage.total_tokens == 8
