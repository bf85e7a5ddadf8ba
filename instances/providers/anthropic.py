"""Anthropic's Messages API, translated to and from the OpenAI shape the rest of the project speaks.

The gateway and health checks think in OpenAI chat completions; this module is
the one place that knows Anthropic differs: the system prompt is a top-level
field, max_tokens is mandatory, stop is stop_sequences, auth is x-api-key, and
streams are typed events rather than chunks.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import httpx

from .base import ChatResult, ErrorKind, Message, ModelListing, ProviderAdapter, ProviderError, ProviderTarget
from .openai import expect_event_stream, model_ids, parse_chat_completion
from .transport import check_header_value, fail, iter_sse, join_url, open_response, parse_json_object, request_json

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
"""Sent when an OpenAI-style request leaves max_tokens out, which Anthropic does not allow."""

# OpenAI's temperature runs to 2, Anthropic's to 1; anything above 1 is sent as 1 rather than refused.
_MAX_TEMPERATURE = 1.0
# Parameters Anthropic takes as they come (top_k and thinking are Anthropic-only, passed through `extra`).
_PASSTHROUGH = ("top_p", "top_k", "thinking")

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

_ERROR_KINDS = {
    "invalid_request_error": ErrorKind.BAD_REQUEST,
    "request_too_large": ErrorKind.BAD_REQUEST,
    "authentication_error": ErrorKind.AUTH,
    "permission_error": ErrorKind.AUTH,
    "not_found_error": ErrorKind.NOT_FOUND,
    "rate_limit_error": ErrorKind.RATE_LIMITED,
}


def _untranslatable(message: str) -> ProviderError:
    return ProviderError(ErrorKind.BAD_REQUEST, f"Cannot translate for Anthropic: {message}")


def _content_part(part: Any) -> dict[str, Any]:
    """One OpenAI content part as an Anthropic content block (text, or an image by data URL or URL)."""
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text" and isinstance(part.get("text"), str):
        return {"type": "text", "text": part["text"]}
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if isinstance(url, str) and url.startswith("data:") and ";base64," in url:
            media_type, _, data = url.removeprefix("data:").partition(";base64,")
            return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
        if isinstance(url, str) and url.startswith(("http://", "https://")):
            return {"type": "image", "source": {"type": "url", "url": url}}
    raise _untranslatable(f"content part of type {kind!r}.")


def _content(content: Any) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return [_content_part(part) for part in content]
    raise _untranslatable("a message without text content (tool calls are not translated).")


def _system_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(part, dict) and part.get("type") == "text" for part in content):
        return "".join(str(part.get("text", "")) for part in content)
    raise _untranslatable("a system message that is not text.")


def to_anthropic_request(body: Mapping[str, Any], *, default_max_tokens: int = DEFAULT_MAX_TOKENS) -> dict[str, Any]:
    """An OpenAI chat request body as an Anthropic Messages request body.

    1. system and developer messages are joined into `system`; user and
       assistant messages keep their order; any other role is refused.
    2. max_completion_tokens or max_tokens becomes max_tokens (default_max_tokens when absent).
    3. stop (string or list) becomes stop_sequences; user becomes metadata.user_id;
       temperature is capped at 1; top_p, top_k, thinking pass through.
    4. Every other OpenAI parameter is dropped: Anthropic rejects unknown fields.
    """
    system: list[str] = []
    messages: list[dict[str, Any]] = []
    for message in body.get("messages") or ():
        role = message.get("role") if isinstance(message, Mapping) else None
        if role in ("system", "developer"):
            system.append(_system_text(message.get("content")))
        elif role in ("user", "assistant"):
            messages.append({"role": role, "content": _content(message.get("content"))})
        else:
            raise _untranslatable(f"messages with role {role!r}.")
    if not messages:
        raise _untranslatable("the request has no user or assistant message.")

    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or default_max_tokens
    request: dict[str, Any] = {"model": body.get("model"), "messages": messages, "max_tokens": max_tokens}
    if system:
        request["system"] = "\n\n".join(system)
    if body.get("temperature") is not None:
        request["temperature"] = min(float(body["temperature"]), _MAX_TEMPERATURE)
    stop = body.get("stop")
    if stop:
        request["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("stream"):
        request["stream"] = True
    if body.get("user"):
        # OpenAI's own `metadata` (stored-completion tags) is dropped: Anthropic's takes only user_id.
        request["metadata"] = {"user_id": body["user"]}
    request.update({key: body[key] for key in _PASSTHROUGH if body.get(key) is not None})
    return request


def to_openai_response(message: Mapping[str, Any], *, created: int | None = None) -> dict[str, Any]:
    """An Anthropic Messages reply as an OpenAI chat.completion (thinking goes to reasoning_content).

    Prompt tokens include cache reads and writes: all of them were input the model processed.
    """
    blocks = [block for block in message.get("content") or [] if isinstance(block, dict)]
    text = "".join(block.get("text", "") for block in blocks if block.get("type") == "text")
    thinking = "".join(block.get("thinking", "") for block in blocks if block.get("type") == "thinking")
    reply: dict[str, Any] = {"role": "assistant", "content": text}
    if thinking:
        reply["reasoning_content"] = thinking
    usage = message.get("usage") or {}
    prompt_tokens = sum(
        int(usage.get(key) or 0) for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )
    completion_tokens = int(usage.get("output_tokens") or 0)
    return {
        "id": message.get("id", ""),
        "object": "chat.completion",
        "created": created if created is not None else int(time.time()),
        "model": message.get("model", ""),
        "choices": [
            {
                "index": 0,
                "message": reply,
                "finish_reason": FINISH_REASONS.get(message.get("stop_reason") or "", "stop"),
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class AnthropicStreamTranslator:
    """Anthropic stream events in, OpenAI chat.completion.chunk dicts out.

    message_start opens the assistant turn, text and thinking deltas become
    content and reasoning_content deltas, message_delta carries the finish
    reason, and message_stop emits a final chunk with usage and no choices (the
    shape OpenAI uses with stream_options.include_usage). ping, block
    boundaries and event types Anthropic may add later produce nothing.
    """

    def __init__(self, *, model: str = "", created: int | None = None) -> None:
        self.id = ""
        self.model = model
        self.created = created if created is not None else int(time.time())
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }

    def _count_usage(self, usage: Any) -> None:
        """Anthropic's counts are cumulative, so the latest value replaces the previous one."""
        if not isinstance(usage, dict):
            return
        inputs = [usage.get(key) for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")]
        if any(isinstance(value, int) for value in inputs):
            self.prompt_tokens = sum(value for value in inputs if isinstance(value, int))
        if isinstance(usage.get("output_tokens"), int):
            self.completion_tokens = usage["output_tokens"]

    def feed(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self.id = message.get("id") or self.id
            self.model = message.get("model") or self.model
            self._count_usage(message.get("usage"))
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind in ("content_block_start", "content_block_delta"):
            block = event.get("content_block") or event.get("delta") or {}
            if block.get("type") in ("text", "text_delta") and block.get("text"):
                return [self._chunk({"content": block["text"]})]
            if block.get("type") in ("thinking", "thinking_delta") and block.get("thinking"):
                return [self._chunk({"reasoning_content": block["thinking"]})]
            return []
        if kind == "message_delta":
            self._count_usage(event.get("usage"))
            stop_reason = (event.get("delta") or {}).get("stop_reason")
            return [self._chunk({}, FINISH_REASONS.get(stop_reason or "", "stop"))] if stop_reason else []
        if kind == "message_stop":
            final = self._chunk({})
            final["choices"] = []
            final["usage"] = {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens,
            }
            return [final]
        return []


def _stream_error(target: ProviderTarget, event: Mapping[str, Any]) -> ProviderError:
    """An `error` event mid-stream (e.g. overloaded_error after the 200 was sent)."""
    error = event.get("error") or {}
    kind = _ERROR_KINDS.get(error.get("type", ""), ErrorKind.SERVER_ERROR)
    return fail(target, kind, str(error.get("message") or error.get("type") or "stream error"))


class AnthropicAdapter(ProviderAdapter):
    provider_type = "anthropic"
    default_base_url = "https://api.anthropic.com/v1"

    def headers(self, target: ProviderTarget) -> dict[str, str]:
        headers = {
            "content-type": "application/json",
            "accept": "application/json",
            "anthropic-version": ANTHROPIC_VERSION,
        }
        if target.api_key:
            headers["x-api-key"] = check_header_value(target, target.api_key)
        return headers

    def build_body(
        self,
        target: ProviderTarget,
        messages: Sequence[Message],
        *,
        max_tokens: int | None,
        temperature: float | None,
        extra: Mapping[str, Any] | None,
        stream: bool,
    ) -> dict[str, Any]:
        """The OpenAI-style arguments, assembled as an OpenAI body and translated once."""
        body: dict[str, Any] = dict(extra or {})
        body.update(model=target.model_name, messages=list(messages), stream=stream)
        if max_tokens is not None:
            body.pop("max_completion_tokens", None)
            body["max_tokens"] = max_tokens
        if temperature is not None:
            body["temperature"] = temperature
        return to_anthropic_request(body)

    async def list_models(self, client: httpx.AsyncClient, target: ProviderTarget) -> ModelListing:
        # One page of the largest size Anthropic allows; no account has more models than that.
        url = join_url(target.endpoint_url, "models?limit=1000")
        data, latency_ms = await request_json(client, target, "GET", url, headers=self.headers(target))
        return ModelListing(ids=model_ids(target, data), latency_ms=latency_ms)

    async def chat(
        self,
        client: httpx.AsyncClient,
        target: ProviderTarget,
        messages: Sequence[Message],
        *,
        max_tokens: int | None,
        temperature: float | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> ChatResult:
        body = self.build_body(
            target, messages, max_tokens=max_tokens, temperature=temperature, extra=extra, stream=False
        )
        url = join_url(target.endpoint_url, "messages")
        data, latency_ms = await request_json(client, target, "POST", url, headers=self.headers(target), json_body=body)
        if data.get("type") != "message" or not isinstance(data.get("content"), list):
            raise fail(target, ErrorKind.BAD_RESPONSE, "Reply is not an Anthropic message.")
        return parse_chat_completion(target, to_openai_response(data), latency_ms, raw=data)

    async def stream_chat(
        self,
        client: httpx.AsyncClient,
        target: ProviderTarget,
        messages: Sequence[Message],
        *,
        max_tokens: int | None,
        temperature: float | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        body = self.build_body(
            target, messages, max_tokens=max_tokens, temperature=temperature, extra=extra, stream=True
        )
        url = join_url(target.endpoint_url, "messages")
        headers = self.headers(target) | {"accept": "text/event-stream"}
        translator = AnthropicStreamTranslator(model=target.model_name)
        async with open_response(client, target, "POST", url, headers=headers, json_body=body) as response:
            expect_event_stream(target, response)
            async for event in iter_sse(response, target):
                data = parse_json_object(target, event.data)
                if data.get("type") == "error":
                    raise _stream_error(target, data)
                for chunk in translator.feed(data):
                    yield chunk
                if data.get("type") == "message_stop":
                    return
