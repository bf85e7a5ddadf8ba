"""A simulated LLM provider: one async HTTP server playing many named instances.

Tests, demos and benchmarks need upstreams that answer over real sockets, fail
on demand and hold thousands of slow connections, without paying for tokens.
This is a raw ASGI app (no Django, no per-request threads) served by uvicorn.

Paths, for an instance called <name> (created on first use):

    /sim/<name>/<any base>/chat/completions   OpenAI shape (OpenAI, ZAI, Perplexity, vLLM...)
    /sim/<name>/<any base>/messages           Anthropic Messages (anthropic-version header required)
    /sim/<name>/<any base>/models             model listing (Anthropic shape when anthropic-version is sent)
    /sim/<name>/metrics                       vLLM Prometheus gauges

    GET    /_control/instances/<name>   behaviour and request counters
    PUT    /_control/instances/<name>   replace the behaviour (JSON; omitted fields take the server defaults)
    DELETE /_control/instances          forget every instance: behaviours back to defaults, counters to zero

Run it with `manage.py simulate_providers --port 9100` or `python -m simulator.server --port 9100`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import re
import secrets
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import uvicorn

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

MAX_REQUEST_BYTES = 8 * 1024 * 1024
DEFAULT_LISTED_MODELS = ("sim-model",)
ANTHROPIC_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "stream",
        "metadata",
        "thinking",
        "tools",
        "tool_choice",
        "service_tier",
    }
)
# One word per token keeps the reply's usage easy to check against its text.
_WORDS = (
    "the", "simulated", "provider", "answers", "with", "plain", "words", "while", "latency",
    "failures", "and", "slow", "streams", "follow", "what", "the", "test", "configured",
)  # fmt: skip
_NAME = r"[A-Za-z0-9._~-]+"
# Each provider's real base path shape, so adapters are tested against bases with and without /v1.
BASE_PATHS = {
    "openai": "/v1",
    "anthropic": "/v1",
    "openai_compatible": "/v1",
    "zai": "/api/paas/v4",
    "perplexity": "",
}
_SIM_PATH = re.compile(rf"/sim/(?P<name>{_NAME})(?P<rest>/.*)?")
_CONTROL_PATH = re.compile(rf"/_control/instances/(?P<name>{_NAME})")


@dataclass(frozen=True)
class Behaviour:
    """How one simulated instance answers. Every field is also a command-line flag (--latency-ms ...)."""

    latency_ms: float = field(default=0.0, metadata={"help": "Delay before answering (before the first byte)."})
    jitter_ms: float = field(default=0.0, metadata={"help": "Extra random delay, uniform in 0..jitter_ms."})
    failure_rate: float = field(default=0.0, metadata={"help": "Share of requests (0..1) failed with failure_status."})
    failure_status: int = field(default=500, metadata={"help": "Status of failed requests (429 simulates throttling)."})
    rate_limit_rpm: int = field(default=0, metadata={"help": "Requests per minute before 429s (0: no limit)."})
    retry_after: float | None = field(
        default=None,
        metadata={"help": "Retry-After seconds on 429s (default: until the rate window frees up, or 1)."},
    )
    required_api_key: str | None = field(default=None, metadata={"help": "Key callers must send (default: any)."})
    auth_failure_status: int = field(default=401, metadata={"help": "Status for a wrong key: 401 or 403."})
    models: list[str] | None = field(
        default=None,
        metadata={"help": "Served models, comma separated; others get 404 (default: any model, lists sim-model)."},
    )
    reply_tokens: int = field(default=16, metadata={"help": "Visible tokens in a reply that max_tokens does not cut."})
    reasoning_tokens: int = field(
        default=0, metadata={"help": "Tokens spent thinking before the visible reply (0: not a reasoning model)."}
    )
    content_bytes: int = field(default=0, metadata={"help": "Pad the reply content to this many bytes (0: off)."})
    stream_chunks: int = field(default=8, metadata={"help": "Content chunks in a streamed reply."})
    stream_chunk_delay_ms: float = field(default=0.0, metadata={"help": "Pause before each streamed chunk."})
    stream_error_after: int | None = field(
        default=None, metadata={"help": "End streams with an error event after this many content chunks."}
    )
    metrics_enabled: bool = field(default=True, metadata={"help": "Serve /metrics (off: 404, like Ollama)."})
    vllm_running: int | None = field(
        default=None, metadata={"help": "vllm:num_requests_running (default: the live count of other requests)."}
    )
    vllm_waiting: int = field(default=0, metadata={"help": "vllm:num_requests_waiting."})
    vllm_kv_cache_usage: float = field(default=0.0, metadata={"help": "vllm:kv_cache_usage_perc (0..1)."})
    redirect_to: str | None = field(default=None, metadata={"help": "Answer 307 to this URL instead of replying."})
    malformed: bool = field(default=False, metadata={"help": "Answer 200 with a body that is not the API's JSON."})
    down: bool = field(default=False, metadata={"help": "Drop every connection without an answer."})
    trickle_ms: float = field(
        default=0.0, metadata={"help": "Send every reply body one byte every trickle_ms ms (0: off), streams too."}
    )

    def __post_init__(self) -> None:
        problems = [
            message
            for ok, message in (
                (self.latency_ms >= 0 and self.jitter_ms >= 0, "latency_ms and jitter_ms must be >= 0"),
                (0.0 <= self.failure_rate <= 1.0, "failure_rate must be within 0..1"),
                (400 <= self.failure_status <= 599, "failure_status must be a 4xx or 5xx status"),
                (self.auth_failure_status in (401, 403), "auth_failure_status must be 401 or 403"),
                (self.rate_limit_rpm >= 0, "rate_limit_rpm must be >= 0"),
                (self.retry_after is None or self.retry_after >= 0, "retry_after must be >= 0"),
                (self.reply_tokens >= 0 and self.reasoning_tokens >= 0, "token counts must be >= 0"),
                (self.content_bytes >= 0, "content_bytes must be >= 0"),
                (self.stream_chunks >= 1 and self.stream_chunk_delay_ms >= 0, "stream_chunks >= 1, delay >= 0"),
                ((self.stream_error_after or 0) >= 0, "stream_error_after must be >= 0"),
                ((self.vllm_running or 0) >= 0 and self.vllm_waiting >= 0, "vLLM queue lengths must be >= 0"),
                (0.0 <= self.vllm_kv_cache_usage <= 1.0, "vllm_kv_cache_usage must be within 0..1"),
                (self.trickle_ms >= 0, "trickle_ms must be >= 0"),
            )
            if not ok
        ]
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], base: Behaviour) -> Behaviour:
        """`base` with the given fields replaced, each type-checked: the control API's input is untrusted."""
        known = {spec.name: str(spec.type) for spec in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown fields {unknown}; known: {sorted(known)}")
        return replace(base, **{name: _checked(name, known[name], value) for name, value in data.items()})


def _checked(name: str, annotation: str, value: Any) -> Any:
    """Validate one JSON value against a field annotation ("float", "int | None", "list[str] | None"...)."""
    kind = annotation.removesuffix(" | None")
    if value is None:
        if kind != annotation:
            return None
        raise ValueError(f"{name} may not be null")
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    valid = {
        "float": is_number and math.isfinite(value),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
        "list[str]": isinstance(value, list) and all(isinstance(item, str) for item in value),
    }[kind]
    if not valid:
        raise ValueError(f"{name} must be {annotation}, not {value!r}")
    return float(value) if kind == "float" else value


@dataclass
class Stats:
    """Request counters per instance, so tests can assert where traffic went and how much overlapped."""

    total: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_endpoint: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0
    client_disconnects: int = 0
    last_request: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"by_status": dict(self.by_status), "by_endpoint": dict(self.by_endpoint)}


@dataclass
class SimInstance:
    behaviour: Behaviour
    stats: Stats = field(default_factory=Stats)
    admitted: deque[float] = field(default_factory=deque)  # monotonic times of requests inside the rpm window

    def document(self, name: str) -> dict[str, Any]:
        return {"name": name, "behaviour": asdict(self.behaviour), "stats": self.stats.as_dict()}


class Rejected(Exception):
    """A reply other than the happy path: raised from deep inside a handler, answered in one place."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class ReplyPlan:
    """How a reply spends its token budget: thinking first, then visible words, cut at max_tokens."""

    reasoning_tokens: int
    content_tokens: int
    finish_reason: str

    @classmethod
    def for_request(cls, behaviour: Behaviour, max_tokens: int | None) -> ReplyPlan:
        budget = max_tokens if max_tokens is not None else behaviour.reasoning_tokens + behaviour.reply_tokens
        reasoning = min(behaviour.reasoning_tokens, budget)
        content = min(behaviour.reply_tokens, budget - reasoning)
        cut = reasoning + content < behaviour.reasoning_tokens + behaviour.reply_tokens
        return cls(reasoning, content, "length" if cut else "stop")

    @property
    def completion_tokens(self) -> int:
        return self.reasoning_tokens + self.content_tokens


def _words(count: int, offset: int = 0) -> list[str]:
    return [_WORDS[(offset + index) % len(_WORDS)] for index in range(count)]


def _pieces(text: str, count: int) -> Iterator[str]:
    """Split text into at most `count` stream deltas at spaces; joined, the deltas give back the text."""
    words = text.split(" ") if text else []
    size = max(1, math.ceil(len(words) / count))
    for start in range(0, len(words), size):
        yield "".join((" " if start + index else "") + word for index, word in enumerate(words[start : start + size]))


def _content_text(plan: ReplyPlan, behaviour: Behaviour) -> str:
    text = " ".join(_words(plan.content_tokens))
    if behaviour.content_bytes:
        text = (text + " " + "x" * behaviour.content_bytes)[: behaviour.content_bytes]
    return text


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def estimate_prompt_tokens(messages: list[Any], system: Any = None) -> int:
    """About four characters a token plus a few tokens of framing per message, like OpenAI's own accounting."""
    texts = [_text_of(system)] if system else []
    texts += [_text_of(message.get("content")) for message in messages if isinstance(message, dict)]
    return 3 + sum(4 + math.ceil(len(text) / 4) for text in texts)


def _json_bytes(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _sse(payload: Mapping[str, Any] | str, event: str | None = None) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return (f"event: {event}\n" if event else "").encode() + f"data: {data}\n\n".encode()


_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def error_body(shape: str, status: int, message: str) -> dict[str, Any]:
    if shape == "anthropic":
        kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    kind = "server_error" if status >= 500 else "requests" if status == 429 else "invalid_request_error"
    code = {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}.get(status)
    return {"error": {"message": message, "type": kind, "code": code}}


class Exchange:
    """One request: its parsed parts, the client-disconnect watch, and the response sent so far."""

    def __init__(self, scope: Scope, receive: Receive, send: Send, stats: Stats | None = None) -> None:
        self.method: str = scope["method"]
        self.headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
        self._receive = receive
        self._send = send
        self._stats = stats
        self._watch: asyncio.Future[None] | None = None
        # A provider that trickles: each body byte after this pause (Behaviour.trickle_ms).
        self.trickle_seconds = 0.0

    async def body(self) -> bytes:
        chunks = bytearray()
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                break
            chunks += message.get("body", b"")
            if len(chunks) > MAX_REQUEST_BYTES:
                raise Rejected(413, f"Request body over {MAX_REQUEST_BYTES} bytes.")
            if not message.get("more_body"):
                break
        self._watch = asyncio.ensure_future(self._wait_for_disconnect())
        return bytes(chunks)

    async def json(self) -> Any:
        raw = await self.body()
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            raise Rejected(400, "Request body is not valid JSON.") from None

    async def _wait_for_disconnect(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass

    async def pause(self, seconds: float) -> bool:
        """Sleep without holding a thread; False when the client went away meanwhile (then stop answering)."""
        if self._watch is not None and not self._watch.done() and seconds > 0:
            await asyncio.wait({self._watch}, timeout=seconds)
        gone = self._watch is not None and self._watch.done()
        if gone and self._stats is not None:
            self._stats.client_disconnects += 1
        return not gone

    def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()

    async def start(self, status: int, content_type: str, headers: Mapping[str, str] | None = None) -> None:
        if self._stats is not None:
            self._stats.by_status[str(status)] += 1
        raw = [(b"content-type", content_type.encode())]
        raw += [(key.encode(), value.encode()) for key, value in (headers or {}).items()]
        await self._send({"type": "http.response.start", "status": status, "headers": raw})

    async def chunk(self, data: bytes, *, more: bool = True) -> None:
        if self.trickle_seconds and data:
            for index in range(len(data)):
                if not await self.pause(self.trickle_seconds):
                    return
                byte, more_of_it = data[index : index + 1], more or index < len(data) - 1
                await self._send({"type": "http.response.body", "body": byte, "more_body": more_of_it})
            return
        await self._send({"type": "http.response.body", "body": data, "more_body": more})

    async def reply(
        self,
        status: int,
        payload: Any,
        headers: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        data = payload if isinstance(payload, bytes) else _json_bytes(payload)
        await self.start(status, content_type, {"content-length": str(len(data)), **(headers or {})})
        await self.chunk(data, more=False)

    async def drop(self) -> None:
        """Reset the connection without a status line, as a crashed or unreachable server would.

        ASGI has no way to say this, so it reaches uvicorn's transport through the
        bound `send` of its request cycle; the simulator only ever runs under uvicorn.
        """
        transport = getattr(getattr(self._send, "__self__", None), "transport", None)
        if transport is None:
            raise RuntimeError("Dropping connections needs uvicorn's HTTP protocol.")
        transport.abort()
        await asyncio.sleep(0)  # let uvicorn see the loss, so it does not answer 500 in our place


class SimulatorApp:
    """The ASGI application. All state lives on the event loop: no locks, no threads."""

    def __init__(self, defaults: Behaviour | None = None, *, seed: int | None = None) -> None:
        self.defaults = defaults or Behaviour()
        self.instances: dict[str, SimInstance] = {}
        self.random = random.Random(seed)

    def instance(self, name: str) -> SimInstance:
        if name not in self.instances:
            self.instances[name] = SimInstance(self.defaults)
        return self.instances[name]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        path: str = scope["path"]
        if match := _SIM_PATH.fullmatch(path):
            instance = self.instance(match["name"])
            await self._simulate(instance, match["rest"] or "", Exchange(scope, receive, send, instance.stats))
        elif path.startswith("/_control/"):
            await self._control(path, Exchange(scope, receive, send))
        else:
            await Exchange(scope, receive, send).reply(404, {"error": f"No route for {path}."})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _control(self, path: str, exchange: Exchange) -> None:
        match = _CONTROL_PATH.fullmatch(path)
        try:
            if path == "/_control/instances" and exchange.method == "DELETE":
                self.instances.clear()
                await exchange.reply(204, b"")
            elif match and exchange.method == "GET":
                await exchange.reply(200, self.instance(match["name"]).document(match["name"]))
            elif match and exchange.method == "PUT":
                data = await exchange.json()
                if not isinstance(data, dict):
                    raise Rejected(400, "Expected a JSON object of behaviour fields.")
                try:
                    behaviour = Behaviour.from_mapping(data, self.defaults)
                except ValueError as exc:
                    raise Rejected(400, str(exc)) from None
                instance = self.instance(match["name"])
                instance.behaviour = behaviour
                instance.admitted.clear()
                await exchange.reply(200, instance.document(match["name"]))
            else:
                raise Rejected(404 if not match else 405, f"No control route for {exchange.method} {path}.")
        except Rejected as rejected:
            await exchange.reply(rejected.status, {"error": rejected.message})
        finally:
            exchange.close()

    async def _simulate(self, instance: SimInstance, rest: str, exchange: Exchange) -> None:
        behaviour, stats = instance.behaviour, instance.stats
        endpoint = _endpoint(rest)
        shape = "anthropic" if endpoint == "messages" or "anthropic-version" in exchange.headers else "openai"
        stats.total += 1
        stats.by_endpoint[endpoint] += 1
        exchange.trickle_seconds = behaviour.trickle_ms / 1000.0
        if behaviour.down:
            stats.by_status["dropped"] += 1
            await exchange.drop()
            return
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            body = await exchange.json()
            stats.last_request = {"endpoint": endpoint, "headers": _safe_headers(exchange.headers), "body": body}
            # Latency stands for inference and API time; a metrics scrape answers at once, as vLLM's does.
            if endpoint != "metrics":
                delay_ms = behaviour.latency_ms + self.random.uniform(0.0, behaviour.jitter_ms)
                if not await exchange.pause(delay_ms / 1000.0):
                    return
            await self._answer(instance, endpoint, shape, body, exchange)
        except Rejected as rejected:
            await exchange.reply(
                rejected.status, error_body(shape, rejected.status, rejected.message), rejected.headers
            )
        finally:
            stats.in_flight -= 1
            exchange.close()

    async def _answer(self, instance: SimInstance, endpoint: str, shape: str, body: Any, exchange: Exchange) -> None:
        """The checks a real provider makes, in its order, then the reply."""
        behaviour = instance.behaviour
        expected_method = "POST" if endpoint in ("chat", "messages") else "GET"
        if endpoint == "unknown":
            raise Rejected(404, "Unknown path.")
        if exchange.method != expected_method:
            raise Rejected(405, f"Use {expected_method}.")
        if behaviour.redirect_to:
            await exchange.reply(307, {"moved": behaviour.redirect_to}, {"location": behaviour.redirect_to})
            return
        if endpoint == "metrics":
            await self._metrics(instance, exchange)
            return
        self._authenticate(behaviour, shape, exchange.headers)
        if shape == "anthropic" and "anthropic-version" not in exchange.headers:
            raise Rejected(400, "anthropic-version: header is required")
        self._admit(instance, shape)
        if self.random.random() < behaviour.failure_rate:
            retry = behaviour.retry_after if behaviour.retry_after is not None else 1.0
            headers = _retry_headers(retry, shape) if behaviour.failure_status == 429 else {}
            raise Rejected(behaviour.failure_status, "Simulated failure.", headers)
        if behaviour.malformed:
            await exchange.reply(200, b"<html><body>502 Bad Gateway</body></html>", content_type="text/html")
            return
        if endpoint == "models":
            await exchange.reply(200, _model_listing(behaviour, shape))
        elif endpoint == "chat":
            await self._chat(behaviour, _validated_openai(body, behaviour), exchange)
        else:
            await self._messages(behaviour, _validated_anthropic(body, behaviour), exchange)

    def _authenticate(self, behaviour: Behaviour, shape: str, headers: Mapping[str, str]) -> None:
        """Wrong keys are echoed back, as some providers do, so tests can prove callers scrub them from errors."""
        if behaviour.required_api_key is None:
            return
        if shape == "anthropic":
            key = headers.get("x-api-key", "")
        else:
            key = headers.get("authorization", "").removeprefix("Bearer ")
        if key != behaviour.required_api_key:
            raise Rejected(behaviour.auth_failure_status, f"Incorrect API key provided: {key or '(none)'}.")

    def _admit(self, instance: SimInstance, shape: str) -> None:
        """A sliding one-minute window of admitted requests, answered with 429 and Retry-After when full."""
        limit = instance.behaviour.rate_limit_rpm
        if not limit:
            return
        now = time.monotonic()
        window = instance.admitted
        while window and window[0] <= now - 60.0:
            window.popleft()
        if len(window) >= limit:
            retry = instance.behaviour.retry_after
            if retry is None:
                retry = max(0.0, window[0] + 60.0 - now)
            raise Rejected(429, f"Rate limit of {limit} requests per minute reached.", _retry_headers(retry, shape))
        window.append(now)

    async def _metrics(self, instance: SimInstance, exchange: Exchange) -> None:
        behaviour = instance.behaviour
        if not behaviour.metrics_enabled:
            await exchange.reply(404, b"Not Found", content_type="text/plain")
            return
        running = behaviour.vllm_running
        if running is None:
            running = instance.stats.in_flight - 1  # everyone in flight except this scrape
        labels = '{engine="0",model_name="sim-model"}'
        lines = [
            "# HELP vllm:num_requests_running Number of requests in model execution batches.",
            "# TYPE vllm:num_requests_running gauge",
            f"vllm:num_requests_running{labels} {float(running)}",
            "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
            "# TYPE vllm:num_requests_waiting gauge",
            f"vllm:num_requests_waiting{labels} {float(behaviour.vllm_waiting)}",
            "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.",
            "# TYPE vllm:kv_cache_usage_perc gauge",
            f"vllm:kv_cache_usage_perc{labels} {behaviour.vllm_kv_cache_usage}",
        ]
        text = "\n".join(lines) + "\n"
        await exchange.reply(200, text.encode(), content_type="text/plain; version=0.0.4; charset=utf-8")

    async def _chat(self, behaviour: Behaviour, body: dict[str, Any], exchange: Exchange) -> None:
        """An OpenAI chat.completion, or its chunk stream.

        Streams carry usage in a last, choice-less chunk when stream_options.include_usage
        asks for it (OpenAI, vLLM), and on the finishing chunk otherwise (as ZAI and Perplexity do).
        """
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        plan = ReplyPlan.for_request(behaviour, max_tokens)
        prompt_tokens = estimate_prompt_tokens(body["messages"])
        usage: dict[str, Any] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": plan.completion_tokens,
            "total_tokens": prompt_tokens + plan.completion_tokens,
        }
        if plan.reasoning_tokens:
            usage["completion_tokens_details"] = {"reasoning_tokens": plan.reasoning_tokens}
        head = {"id": f"chatcmpl-sim{secrets.token_hex(8)}", "created": int(time.time()), "model": body["model"]}
        reasoning = " ".join(_words(plan.reasoning_tokens, offset=7))
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": _content_text(plan, behaviour)}
            if reasoning:
                message["reasoning_content"] = reasoning
            choice = {"index": 0, "message": message, "finish_reason": plan.finish_reason}
            await exchange.reply(200, {**head, "object": "chat.completion", "choices": [choice], "usage": usage})
            return

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
            return {**head, "object": "chat.completion.chunk", "choices": [choice]}

        await exchange.start(200, "text/event-stream", {"cache-control": "no-cache"})
        await exchange.chunk(_sse(chunk({"role": "assistant", "content": ""})))
        deltas = [{"reasoning_content": piece} for piece in _pieces(reasoning, behaviour.stream_chunks)]
        deltas += [{"content": piece} for piece in _pieces(_content_text(plan, behaviour), behaviour.stream_chunks)]
        for sent, delta in enumerate(deltas):
            if not await _before_chunk(behaviour, exchange, sent, _OPENAI_STREAM_ERROR):
                return
            await exchange.chunk(_sse(chunk(delta)))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        finish = chunk({}, plan.finish_reason)
        if not include_usage:
            finish["usage"] = usage
        await exchange.chunk(_sse(finish))
        if include_usage:
            await exchange.chunk(_sse({**head, "object": "chat.completion.chunk", "choices": [], "usage": usage}))
        await exchange.chunk(_sse("[DONE]"), more=False)

    async def _messages(self, behaviour: Behaviour, body: dict[str, Any], exchange: Exchange) -> None:
        """An Anthropic message, or its event stream: thinking block first when reasoning, then text."""
        plan = ReplyPlan.for_request(behaviour, body["max_tokens"])
        stop_reason = "max_tokens" if plan.finish_reason == "length" else "end_turn"
        usage = {
            "input_tokens": estimate_prompt_tokens(body["messages"], body.get("system")),
            "output_tokens": plan.completion_tokens,
        }
        reasoning = " ".join(_words(plan.reasoning_tokens, offset=7))
        text = _content_text(plan, behaviour)
        blocks: list[dict[str, Any]] = []
        if reasoning:
            blocks.append({"type": "thinking", "thinking": reasoning, "signature": "sim-signature"})
        if text or not reasoning:
            blocks.append({"type": "text", "text": text})
        message = {
            "id": f"msg_sim{secrets.token_hex(8)}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": blocks,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }
        if not body.get("stream"):
            await exchange.reply(200, message)
            return

        await exchange.start(200, "text/event-stream", {"cache-control": "no-cache"})
        opening = message | {"content": [], "stop_reason": None, "usage": usage | {"output_tokens": 1}}
        await exchange.chunk(_sse({"type": "message_start", "message": opening}, "message_start"))
        await exchange.chunk(_sse({"type": "ping"}, "ping"))
        sent = 0
        for index, block in enumerate(blocks):
            is_text = block["type"] == "text"
            empty = {"type": "text", "text": ""} if is_text else {"type": "thinking", "thinking": ""}
            start = {"type": "content_block_start", "index": index, "content_block": empty}
            await exchange.chunk(_sse(start, "content_block_start"))
            for piece in _pieces(block["text"] if is_text else block["thinking"], behaviour.stream_chunks):
                if not await _before_chunk(behaviour, exchange, sent, _ANTHROPIC_STREAM_ERROR):
                    return
                sent += 1
                delta = (
                    {"type": "text_delta", "text": piece} if is_text else {"type": "thinking_delta", "thinking": piece}
                )
                event = {"type": "content_block_delta", "index": index, "delta": delta}
                await exchange.chunk(_sse(event, "content_block_delta"))
            if not is_text:
                signature = {"type": "signature_delta", "signature": block["signature"]}
                event = {"type": "content_block_delta", "index": index, "delta": signature}
                await exchange.chunk(_sse(event, "content_block_delta"))
            await exchange.chunk(_sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
        closing = {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": plan.completion_tokens},
        }
        await exchange.chunk(_sse(closing, "message_delta"))
        await exchange.chunk(_sse({"type": "message_stop"}, "message_stop"), more=False)


_OPENAI_STREAM_ERROR = _sse(
    {"error": {"message": "Simulated failure mid-stream.", "type": "server_error", "param": None, "code": None}}
)
_ANTHROPIC_STREAM_ERROR = _sse(
    {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "error"
)


async def _before_chunk(behaviour: Behaviour, exchange: Exchange, sent: int, error_event: bytes) -> bool:
    """Pause before a streamed chunk; False when the stream ends here (the client left, or a simulated failure)."""
    if behaviour.stream_error_after is not None and sent >= behaviour.stream_error_after:
        await exchange.chunk(error_event, more=False)
        return False
    return await exchange.pause(behaviour.stream_chunk_delay_ms / 1000.0)


def _endpoint(rest: str) -> str:
    if rest == "/metrics":
        return "metrics"
    for suffix, endpoint in (("/chat/completions", "chat"), ("/messages", "messages"), ("/models", "models")):
        if rest.endswith(suffix):
            return endpoint
    return "unknown"


def _safe_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {key: value for key, value in headers.items() if key not in ("authorization", "x-api-key")}


def _retry_headers(seconds: float, shape: str) -> dict[str, str]:
    """Retry-After in whole seconds, plus OpenAI's millisecond-precise retry-after-ms on OpenAI-shaped replies."""
    headers = {"retry-after": str(math.ceil(seconds))}
    if shape == "openai":
        headers["retry-after-ms"] = str(round(seconds * 1000))
    return headers


def _model_listing(behaviour: Behaviour, shape: str) -> dict[str, Any]:
    ids = behaviour.models if behaviour.models is not None else list(DEFAULT_LISTED_MODELS)
    if shape == "anthropic":
        data = [{"type": "model", "id": id_, "display_name": id_, "created_at": "2025-01-01T00:00:00Z"} for id_ in ids]
        return {
            "data": data,
            "has_more": False,
            "first_id": ids[0] if ids else None,
            "last_id": ids[-1] if ids else None,
        }
    return {
        "object": "list",
        "data": [{"id": id_, "object": "model", "created": 1735689600, "owned_by": "simulator"} for id_ in ids],
    }


def _check_model(model: Any, behaviour: Behaviour) -> str:
    if not isinstance(model, str) or not model:
        raise Rejected(400, "model is required.")
    if behaviour.models is not None and model not in behaviour.models:
        raise Rejected(404, f"The model `{model}` does not exist or you do not have access to it.")
    return model


def _validated_openai(body: Any, behaviour: Behaviour) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise Rejected(400, "Expected a JSON object.")
    _check_model(body.get("model"), behaviour)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Rejected(400, "messages must be a non-empty array.")
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise Rejected(400, "max_tokens must be a positive integer.")
    return body


def _validated_anthropic(body: Any, behaviour: Behaviour) -> dict[str, Any]:
    """As strict as Anthropic itself, so translation mistakes fail here and not in production."""
    if not isinstance(body, dict):
        raise Rejected(400, "Expected a JSON object.")
    extra = sorted(set(body) - ANTHROPIC_FIELDS)
    if extra:
        raise Rejected(400, f"{extra[0]}: Extra inputs are not permitted")
    _check_model(body.get("model"), behaviour)
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
        raise Rejected(400, "max_tokens: Field required")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Rejected(400, "messages: at least one message is required")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise Rejected(400, f"messages.{index}.role: Input should be 'user' or 'assistant'")
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        raise Rejected(400, "system: Input should be a valid string or list")
    stops = body.get("stop_sequences")
    if stops is not None and not (isinstance(stops, list) and all(isinstance(stop, str) for stop in stops)):
        raise Rejected(400, "stop_sequences: Input should be a list of strings")
    return body


def instance_base_url(root_url: str, name: str, provider: str = "openai") -> str:
    """The endpoint_url to register for simulated instance `name` of the given provider type."""
    try:
        return f"{root_url.rstrip('/')}/sim/{name}{BASE_PATHS[provider]}"
    except KeyError:
        raise ValueError(f"Unknown provider type {provider!r}; known: {sorted(BASE_PATHS)}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The server flags plus one flag per Behaviour field: the defaults every instance starts from."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    parser.add_argument("--seed", type=int, default=None, help="Seed for simulated failures and jitter.")
    for spec in fields(Behaviour):
        flag = "--" + spec.name.replace("_", "-")
        kind = str(spec.type).removesuffix(" | None")
        help_text = spec.metadata["help"]
        if kind == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=spec.default, help=help_text)
        elif kind == "list[str]":
            parser.add_argument(flag, type=lambda value: [item for item in value.split(",") if item], help=help_text)
        else:
            parser.add_argument(flag, type={"float": float, "int": int, "str": str}[kind], help=help_text)


def behaviour_from_options(options: Mapping[str, Any]) -> Behaviour:
    """The Behaviour named by parsed flags; flags left unset keep the dataclass defaults."""
    names = {spec.name for spec in fields(Behaviour)}
    return Behaviour(**{name: value for name, value in options.items() if name in names and value is not None})


def uvicorn_config(app: SimulatorApp, *, host: str, port: int, log_level: str = "info") -> uvicorn.Config:
    """One worker on uvloop and httptools where installed; a deep backlog and long keep-alive for big fleets.

    Keep-alive outlives the adapters' 30 s client expiry, so clients never reuse
    a connection the server is about to close.
    """
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="auto",
        http="auto",
        ws="none",
        lifespan="on",
        proxy_headers=False,
        access_log=False,
        log_level=log_level,
        backlog=4096,
        timeout_keep_alive=60,
        timeout_graceful_shutdown=2,
    )


def run(options: Mapping[str, Any]) -> None:
    """Serve until interrupted (the command-line entry point)."""
    app = SimulatorApp(behaviour_from_options(options), seed=options.get("seed"))
    config = uvicorn_config(app, host=options["host"], port=options["port"], log_level=options["log_level"])
    uvicorn.Server(config).run()


if __name__ == "__main__":
    cli = argparse.ArgumentParser(prog="python -m simulator.server", description="A simulated LLM provider.")
    add_arguments(cli)
    run(vars(cli.parse_args()))
