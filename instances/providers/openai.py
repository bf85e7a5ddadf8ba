"""OpenAI's chat API, and the OpenAI shape that ZAI, Perplexity and self-hosted servers reuse.

The subclasses only override what their provider does differently (which
max-tokens field it accepts, whether usage must be requested in streams, where
reasoning text appears), so the shared parsing lives here once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, ClassVar

import httpx

from .base import ChatResult, ErrorKind, Message, ModelListing, ProviderAdapter, ProviderError, ProviderTarget, Usage
from .transport import (
    check_header_value,
    fail,
    iter_sse,
    join_url,
    open_response,
    parse_json_object,
    request_json,
    status_kind,
)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def parse_usage(usage: Any) -> Usage:
    """OpenAI's usage object; missing or malformed counts read as 0 rather than failing a good reply."""
    if not isinstance(usage, dict):
        return Usage()
    prompt = _count(usage.get("prompt_tokens"))
    completion = _count(usage.get("completion_tokens"))
    details = usage.get("completion_tokens_details")
    reasoning = _count(details.get("reasoning_tokens")) if isinstance(details, dict) else 0
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=_count(usage.get("total_tokens")) or prompt + completion,
        reasoning_tokens=reasoning,
    )


def message_text(target: ProviderTarget, content: Any) -> str:
    """A message's content as text: a string, null (e.g. tool calls), or a list of text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str))
    raise fail(target, ErrorKind.BAD_RESPONSE, f"Message content has an unexpected type: {type(content).__name__}.")


def model_ids(target: ProviderTarget, data: dict[str, Any]) -> tuple[str, ...]:
    """The ids of a {"data": [{"id": ...}, ...]} listing, the shape OpenAI and Anthropic share."""
    entries = data.get("data")
    if not isinstance(entries, list):
        raise fail(target, ErrorKind.BAD_RESPONSE, "Model listing has no `data` list.")
    ids = tuple(entry["id"] for entry in entries if isinstance(entry, dict) and isinstance(entry.get("id"), str))
    if len(ids) != len(entries):
        raise fail(target, ErrorKind.BAD_RESPONSE, "Model listing has entries without a string `id`.")
    return ids


def default_split_reasoning(target: ProviderTarget, message: dict[str, Any]) -> tuple[str, str | None]:
    """(visible content, reasoning text or None when the reply carried none).

    ZAI, vLLM and DeepSeek-style servers put thinking in reasoning_content (newer vLLM: reasoning).
    """
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    return message_text(target, message.get("content")), reasoning if isinstance(reasoning, str) else None


def parse_chat_completion(
    target: ProviderTarget,
    data: dict[str, Any],
    latency_ms: float,
    *,
    raw: dict[str, Any] | None = None,
    split_reasoning: Callable[[ProviderTarget, dict[str, Any]], tuple[str, str | None]] = default_split_reasoning,
) -> ChatResult:
    """Read an OpenAI chat.completion; `raw` is the provider's original when `data` is a translation of it."""
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise fail(target, ErrorKind.BAD_RESPONSE, "Reply has no choices.")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise fail(target, ErrorKind.BAD_RESPONSE, "Reply's first choice has no message.")
    content, reasoning_text = split_reasoning(target, message)
    usage = parse_usage(data.get("usage"))
    finish_reason = choices[0].get("finish_reason")
    return ChatResult(
        content=content,
        finish_reason=finish_reason if isinstance(finish_reason, str) else None,
        usage=usage,
        reasoning=reasoning_text is not None or usage.reasoning_tokens > 0,
        model=str(data.get("model") or target.model_name),
        raw=data if raw is None else raw,
        openai_response=data,
        latency_ms=latency_ms,
    )


class OpenAIAdapter(ProviderAdapter):
    provider_type = "openai"
    default_base_url: ClassVar[str | None] = "https://api.openai.com/v1"
    # OpenAI's reasoning models reject max_tokens; every current OpenAI model accepts this one.
    max_tokens_field: ClassVar[str] = "max_completion_tokens"
    # OpenAI only reports usage in a stream when asked to.
    stream_usage_option: ClassVar[bool] = True

    def headers(self, target: ProviderTarget) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json"}
        if target.api_key:
            headers["authorization"] = "Bearer " + check_header_value(target, target.api_key)
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
        body: dict[str, Any] = dict(extra or {})
        body.update(model=target.model_name, messages=[dict(message) for message in messages], stream=stream)
        if max_tokens is not None:
            body.pop("max_tokens", None)
            body.pop("max_completion_tokens", None)
            body[self.max_tokens_field] = max_tokens
        if temperature is not None:
            body["temperature"] = temperature
        if stream and self.stream_usage_option:
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        return body

    def split_reasoning(self, target: ProviderTarget, message: dict[str, Any]) -> tuple[str, str | None]:
        """Where this provider puts reasoning text; Perplexity inlines it instead."""
        return default_split_reasoning(target, message)

    async def list_models(self, client: httpx.AsyncClient, target: ProviderTarget) -> ModelListing:
        url = join_url(target.endpoint_url, "models")
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
        url = join_url(target.endpoint_url, "chat/completions")
        data, latency_ms = await request_json(client, target, "POST", url, headers=self.headers(target), json_body=body)
        return parse_chat_completion(target, data, latency_ms, split_reasoning=self.split_reasoning)

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
        url = join_url(target.endpoint_url, "chat/completions")
        headers = self.headers(target) | {"accept": "text/event-stream"}
        async with open_response(client, target, "POST", url, headers=headers, json_body=body) as response:
            expect_event_stream(target, response)
            async for event in iter_sse(response, target):
                if event.data.strip() == "[DONE]":
                    return
                chunk = parse_json_object(target, event.data)
                if chunk.get("error"):
                    raise stream_error(target, chunk["error"])
                yield chunk


def expect_event_stream(target: ProviderTarget, response: httpx.Response) -> None:
    """A server that ignored stream=true answers JSON; say so instead of yielding an empty stream."""
    content_type = response.headers.get("content-type", "")
    if not content_type.startswith("text/event-stream"):
        raise fail(
            target, ErrorKind.BAD_RESPONSE, f"Expected an event stream, got {content_type or 'no content type'}."
        )


def stream_error(target: ProviderTarget, error: Any) -> ProviderError:
    """An error reported inside a 200 stream (OpenAI, vLLM and Anthropic all do this on mid-stream failures)."""
    if not isinstance(error, dict):
        return fail(target, ErrorKind.SERVER_ERROR, f"Stream reported an error: {error}")
    code = error.get("code")
    kind = status_kind(code) if isinstance(code, int) and 400 <= code < 600 else ErrorKind.SERVER_ERROR
    return fail(target, kind, str(error.get("message") or error))
