"""Anthropic: translation both ways, headers, streaming events as OpenAI chunks, thinking."""

from __future__ import annotations

from typing import Any

import pytest

from instances.providers import ErrorKind, ProviderError, adapter_for
from instances.providers.anthropic import (
    ANTHROPIC_VERSION,
    DEFAULT_MAX_TOKENS,
    AnthropicStreamTranslator,
    to_anthropic_request,
    to_openai_response,
)
from simulator.testing import SimulatorClient

from .support import MESSAGES, call, collect, target_for

anthropic = adapter_for("anthropic")


def test_chat_moves_the_system_prompt_and_translates_parameters(sim_server: SimulatorClient) -> None:
    target = target_for(sim_server, "claude", "anthropic")

    call(
        lambda client: anthropic.chat(
            client,
            target,
            MESSAGES,
            max_tokens=20,
            temperature=1.5,
            extra={"stop": "\n\n", "user": "user-42", "presence_penalty": 0.5, "top_p": 0.8},
        )
    )

    request = sim_server.stats("claude")["last_request"]
    assert request["endpoint"] == "messages"
    assert request["headers"]["anthropic-version"] == ANTHROPIC_VERSION
    assert request["body"] == {
        "model": "sim-model",
        "system": "Answer briefly.",
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 20,
        "temperature": 1.0,
        "top_p": 0.8,
        "stop_sequences": ["\n\n"],
        "metadata": {"user_id": "user-42"},
    }


def test_chat_authenticates_with_x_api_key(sim_server: SimulatorClient) -> None:
    sim_server.configure("claude", required_api_key="sk-ant-right")
    target = target_for(sim_server, "claude", "anthropic", api_key="sk-ant-right")

    result = call(lambda client: anthropic.chat(client, target, MESSAGES, max_tokens=5))

    assert result.content
    assert sim_server.stats("claude")["by_status"] == {"200": 1}


def test_chat_without_max_tokens_sends_the_default_anthropic_requires(sim_server: SimulatorClient) -> None:
    target = target_for(sim_server, "claude", "anthropic")

    call(lambda client: anthropic.chat(client, target, MESSAGES, max_tokens=None))

    assert sim_server.stats("claude")["last_request"]["body"]["max_tokens"] == DEFAULT_MAX_TOKENS


def test_chat_result_is_an_openai_completion_and_keeps_the_anthropic_raw(sim_server: SimulatorClient) -> None:
    sim_server.configure("claude", reply_tokens=5)
    target = target_for(sim_server, "claude", "anthropic")

    result = call(lambda client: anthropic.chat(client, target, MESSAGES, max_tokens=100))

    assert result.content == "the simulated provider answers with"
    assert result.finish_reason == "stop"
    assert result.usage.completion_tokens == 5
    assert result.usage.total_tokens == result.usage.prompt_tokens + 5
    assert result.raw["type"] == "message"
    assert result.raw["stop_reason"] == "end_turn"
    openai = result.openai_response
    assert openai["object"] == "chat.completion"
    assert openai["id"] == result.raw["id"]
    assert openai["choices"][0]["message"] == {"role": "assistant", "content": result.content}
    assert openai["usage"]["prompt_tokens"] == result.raw["usage"]["input_tokens"]


def test_a_reply_cut_at_max_tokens_finishes_with_length(sim_server: SimulatorClient) -> None:
    target = target_for(sim_server, "claude", "anthropic")

    result = call(lambda client: anthropic.chat(client, target, MESSAGES, max_tokens=2))

    assert result.raw["stop_reason"] == "max_tokens"
    assert result.finish_reason == "length"


def test_thinking_that_used_the_whole_budget_is_flagged_not_failed(sim_server: SimulatorClient) -> None:
    sim_server.configure("claude", reasoning_tokens=40)
    target = target_for(sim_server, "claude", "anthropic")

    result = call(lambda client: anthropic.chat(client, target, MESSAGES, max_tokens=5))

    assert result.reasoning_only
    assert result.content == ""
    assert result.openai_response["choices"][0]["message"]["reasoning_content"]


def test_list_models_speaks_anthropic(sim_server: SimulatorClient) -> None:
    sim_server.configure("claude", models=["claude-a", "claude-b"])
    target = target_for(sim_server, "claude", "anthropic", model="claude-a")

    listing = call(lambda client: anthropic.list_models(client, target))

    assert listing.ids == ("claude-a", "claude-b")
    request = sim_server.stats("claude")["last_request"]
    assert request["headers"]["anthropic-version"] == ANTHROPIC_VERSION


def test_stream_events_become_openai_chunks_with_usage_last(sim_server: SimulatorClient) -> None:
    sim_server.configure("claude", reply_tokens=6, stream_chunks=3)
    target = target_for(sim_server, "claude", "anthropic")

    chunks = call(lambda client: collect(anthropic.stream_chat(client, target, MESSAGES, max_tokens=50)))

    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    contents = [chunk["choices"][0]["delta"]["content"] for chunk in chunks[1:4]]
    assert "".join(contents) == "the simulated provider answers with plain"
    assert chunks[4]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    assert chunks[5]["choices"] == []
    assert chunks[5]["usage"]["completion_tokens"] == 6
    assert chunks[5]["usage"]["prompt_tokens"] > 0
    assert len(chunks) == 6
    assert sim_server.stats("claude")["last_request"]["body"]["stream"] is True


def test_streamed_thinking_arrives_as_reasoning_content(sim_server: SimulatorClient) -> None:
    sim_server.configure("claude", reasoning_tokens=3, reply_tokens=2, stream_chunks=8)
    target = target_for(sim_server, "claude", "anthropic")

    chunks = call(lambda client: collect(anthropic.stream_chat(client, target, MESSAGES, max_tokens=50)))

    deltas = [chunk["choices"][0]["delta"] for chunk in chunks if chunk["choices"]]
    assert [key for delta in deltas for key in delta if key != "role"] == [
        "content",  # the opening chunk's empty content
        "reasoning_content",
        "reasoning_content",
        "reasoning_content",
        "content",
        "content",
    ]
    assert chunks[-1]["usage"]["completion_tokens"] == 5


def test_an_untranslatable_request_fails_before_anything_is_sent(sim_server: SimulatorClient) -> None:
    target = target_for(sim_server, "claude", "anthropic")
    messages = [{"role": "user", "content": "hi"}, {"role": "tool", "content": "42", "tool_call_id": "x"}]

    with pytest.raises(ProviderError) as caught:
        call(lambda client: anthropic.chat(client, target, messages, max_tokens=5))

    assert caught.value.kind == ErrorKind.BAD_REQUEST
    assert sim_server.stats("claude")["total"] == 0


def test_request_translation_handles_developer_prompts_images_and_drops_openai_only_fields() -> None:
    body = {
        "model": "claude-x",
        "messages": [
            {"role": "developer", "content": [{"type": "text", "text": "Rule one."}]},
            {"role": "system", "content": "Rule two."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                ],
            },
            {"role": "assistant", "content": "A cat."},
            {"role": "user", "content": "Sure?"},
        ],
        "max_completion_tokens": 64,
        "stop": ["END", "STOP"],
        "n": 1,
        "logprobs": True,
        "response_format": {"type": "text"},
        "metadata": {"purpose": "eval"},
        "top_k": 5,
        "stream": True,
    }

    request = to_anthropic_request(body)

    assert request == {
        "model": "claude-x",
        "system": "Rule one.\n\nRule two.",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
                ],
            },
            {"role": "assistant", "content": "A cat."},
            {"role": "user", "content": "Sure?"},
        ],
        "max_tokens": 64,
        "stop_sequences": ["END", "STOP"],
        "top_k": 5,
        "stream": True,
    }


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "system", "content": "Only a system prompt."}],
        [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}],
        [{"role": "assistant", "content": None, "tool_calls": [{"id": "call_1"}]}],
    ],
)
def test_request_translation_refuses_what_anthropic_cannot_take(messages: list[dict[str, object]]) -> None:
    with pytest.raises(ProviderError) as caught:
        to_anthropic_request({"model": "claude-x", "messages": messages})

    assert caught.value.kind == ErrorKind.BAD_REQUEST


def test_response_translation_counts_cache_tokens_and_maps_stop_reasons() -> None:
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [
            {"type": "thinking", "thinking": "Let me see.", "signature": "sig"},
            {"type": "text", "text": "Hello"},
            {"type": "text", "text": " there."},
        ],
        "stop_reason": "stop_sequence",
        "usage": {
            "input_tokens": 10,
            "cache_creation_input_tokens": 5,
            "cache_read_input_tokens": 100,
            "output_tokens": 7,
        },
    }

    response = to_openai_response(message, created=1700000000)

    assert response == {
        "id": "msg_1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "claude-x",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello there.", "reasoning_content": "Let me see."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 115, "completion_tokens": 7, "total_tokens": 122},
    }


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [("end_turn", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"), ("refusal", "content_filter")],
)
def test_stop_reasons_map_to_openai_finish_reasons(stop_reason: str, finish_reason: str) -> None:
    message = {"type": "message", "content": [], "stop_reason": stop_reason, "usage": {}}

    assert to_openai_response(message)["choices"][0]["finish_reason"] == finish_reason


def test_the_stream_translator_ignores_pings_and_unknown_events_and_keeps_cumulative_usage() -> None:
    translator = AnthropicStreamTranslator(model="claude-x", created=1)
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {"id": "msg_1", "model": "claude-x", "usage": {"input_tokens": 9}}},
        {"type": "ping"},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "some_future_event"},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 3}},
        {"type": "message_delta", "delta": {}, "usage": {"output_tokens": 4}},
        {"type": "message_stop"},
    ]

    chunks = [chunk for event in events for chunk in translator.feed(event)]

    assert [chunk["choices"][0]["delta"] if chunk["choices"] else "usage" for chunk in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "Hi"},
        {},
        "usage",
    ]
    assert chunks[2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"] == {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
