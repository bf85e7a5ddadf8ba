"""Self-hosted OpenAI-compatible servers (vLLM, Ollama, TGI), plus vLLM's own load figures.

A server's queue is a better load signal than our in-flight count, which misses
traffic that reaches it from elsewhere; vLLM exports it as Prometheus gauges at
the server root (/metrics, beside /v1).
"""

from __future__ import annotations

import math
import time

import httpx

from .base import ErrorKind, ProviderError, ProviderTarget, ServerMetrics
from .openai import OpenAIAdapter
from .transport import fail, join_url, open_response, read_bounded

RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
# vLLM's V0 engine called the KV-cache gauge gpu_cache_usage_perc; V1 renamed it kv_cache_usage_perc.
CACHE_USAGE = ("vllm:gpu_cache_usage_perc", "vllm:kv_cache_usage_perc")


def metrics_url(endpoint_url: str) -> str:
    """The server root's /metrics: the API base without its trailing /v1."""
    return join_url(endpoint_url.rstrip("/").removesuffix("/v1"), "metrics")


def _sample(line: str) -> tuple[str, float] | None:
    """(metric name, value) of one exposition line; label values may hold spaces and braces, so skip them whole."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    brace = line.find("{")
    space = line.find(" ")
    if brace != -1 and (space == -1 or brace < space):
        name, rest = line[:brace], line[line.rfind("}") + 1 :]
    else:
        name, _, rest = line.partition(" ")
    fields = rest.split()
    if not fields:
        return None
    try:
        value = float(fields[0])
    except ValueError:
        return None
    return (name, value) if math.isfinite(value) else None


def parse_vllm_metrics(text: str) -> tuple[float | None, float | None, float | None] | None:
    """(running, waiting, cache usage) from Prometheus text; None when the server exports none of them.

    A server with several engines exports one series per engine: queue lengths
    are summed (the server's total), cache usage takes the maximum (the engine
    closest to preempting requests decides how loaded the server is).
    """
    running: float | None = None
    waiting: float | None = None
    cache: float | None = None
    for line in text.splitlines():
        sample = _sample(line)
        if sample is None:
            continue
        name, value = sample
        if name == RUNNING:
            running = (running or 0.0) + value
        elif name == WAITING:
            waiting = (waiting or 0.0) + value
        elif name in CACHE_USAGE:
            cache = value if cache is None else max(cache, value)
    if running is None and waiting is None and cache is None:
        return None
    return running, waiting, cache


class OpenAICompatibleAdapter(OpenAIAdapter):
    provider_type = "openai_compatible"
    default_base_url = None  # self-hosted: always configured per instance
    publishes_queue_metrics = True  # vLLM's /metrics
    # vLLM, Ollama and TGI all take max_tokens; not all know max_completion_tokens.
    max_tokens_field = "max_tokens"

    async def server_metrics(self, client: httpx.AsyncClient, target: ProviderTarget) -> ServerMetrics | None:
        """vLLM's queue gauges, or None when the server has no /metrics (Ollama, TGI behind a proxy) or no vLLM ones."""
        started = time.perf_counter()
        try:
            async with open_response(
                client, target, "GET", metrics_url(target.endpoint_url), headers=self.headers(target)
            ) as response:
                body = await read_bounded(response, target)
        except ProviderError as exc:
            if exc.kind == ErrorKind.NOT_FOUND:
                return None
            raise
        latency_ms = (time.perf_counter() - started) * 1000.0
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise fail(target, ErrorKind.BAD_RESPONSE, "Metrics are not UTF-8 text.") from None
        parsed = parse_vllm_metrics(text)
        if parsed is None:
            return None
        running, waiting, cache = parsed
        return ServerMetrics(
            num_requests_running=running,
            num_requests_waiting=waiting,
            gpu_cache_usage_perc=cache,
            latency_ms=latency_ms,
        )
