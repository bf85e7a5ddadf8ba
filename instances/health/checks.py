"""The four check types, each a real call to the provider (no ORM here).

Every check returns a CheckResult: status healthy|degraded|unhealthy|unknown,
a score in 0..1, the response time and the issues found in words, and whether
the provider's API answered it (`api_exercised`): a result that did not call
the API successfully never counts as a success (instances.health.status).

Each check has a total deadline (check_deadline): the instance's timeout for
every API call the check makes (basic and comprehensive 1, load 2, latency one
per sample). The transport's timeout bounds each read, so a provider trickling
a byte at a time would otherwise hold a check for as long as it likes; missing
the deadline is an unhealthy `timeout` result, as a timed-out read is.

Latency score, with W = response_time_warning and C = response_time_critical:
    t <= W:      score = 1.0 - 0.3 * t / W            (1.0 .. 0.7, healthy)
    W < t <= C:  score = 0.7 - 0.5 * (t - W) / (C - W) (0.7 .. 0.2, degraded)
    t > C:       score = 0.1                           (degraded)
Load score, with u = current_load / max_concurrent_requests and q = requests
the server reports waiting: score = max(0, 1 - u) / (1 + q / max_concurrent);
degraded when u >= 0.9 or q > max_concurrent.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from instances.choices import CheckStatus, CheckType
from instances.providers.base import ErrorKind, ProviderError, ProviderTarget
from instances.providers.registry import adapter_for

COMPREHENSIVE_PROMPT = [{"role": "user", "content": "Reply with the single word OK."}]
COMPREHENSIVE_MAX_TOKENS = 5


@dataclass(frozen=True, slots=True)
class CheckContext:
    """What a check needs to judge besides the provider's answer."""

    current_load: int = 0
    max_concurrent_requests: int = 1
    response_time_warning_ms: float = 2000.0
    response_time_critical_ms: float = 5000.0
    latency_samples: int = 3


@dataclass(slots=True)
class CheckResult:
    check_type: str
    status: str
    score: float
    response_time_ms: float | None = None
    issues: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    error_kind: str = ""
    api_exercised: bool = False

    @property
    def auth_failure(self) -> bool:
        return self.error_kind == ErrorKind.AUTH


def latency_score(ms: float, context: CheckContext) -> tuple[str, float]:
    warning, critical = (
        context.response_time_warning_ms,
        max(context.response_time_critical_ms, context.response_time_warning_ms + 1),
    )
    if ms <= warning:
        return CheckStatus.HEALTHY, round(1.0 - 0.3 * ms / warning, 4)
    if ms <= critical:
        return CheckStatus.DEGRADED, round(0.7 - 0.5 * (ms - warning) / (critical - warning), 4)
    return CheckStatus.DEGRADED, 0.1


def _failure(check_type: str, error: ProviderError, elapsed_ms: float | None) -> CheckResult:
    """Map a provider error to a result: throttling is degraded (the API answered), the rest unhealthy."""
    issue = str(error)
    if error.kind == ErrorKind.RATE_LIMITED:
        wait = f"; retry after {error.retry_after:g} s" if error.retry_after is not None else ""
        return CheckResult(
            check_type, CheckStatus.DEGRADED, 0.3, elapsed_ms, [f"rate limited{wait}"], {}, error.kind, True
        )
    if error.kind == ErrorKind.AUTH:
        issue = f"the provider rejected the API key ({error.status_code})"
    elif error.kind == ErrorKind.NOT_FOUND:
        issue = f"not found (404): wrong endpoint path or model — {error.message}"
    return CheckResult(check_type, CheckStatus.UNHEALTHY, 0.0, elapsed_ms, [issue], {}, error.kind)


async def _probe(client: httpx.AsyncClient, target: ProviderTarget) -> tuple[float, dict[str, Any]]:
    """The cheapest authenticated call: the models listing, or a 1-token completion where none exists."""
    adapter = adapter_for(target.provider_type)
    if adapter.supports_model_listing:
        listing = await adapter.list_models(client, target)
        return listing.latency_ms, {"models": list(listing.ids[:50]), "probe": "models"}
    reply = await adapter.chat(client, target, [{"role": "user", "content": "ping"}], max_tokens=1)
    return reply.latency_ms, {"probe": "chat", "completion_tokens": reply.usage.completion_tokens}


async def basic_check(client: httpx.AsyncClient, target: ProviderTarget, context: CheckContext) -> CheckResult:
    started = time.perf_counter()
    try:
        latency, details = await _probe(client, target)
    except ProviderError as error:
        return _failure(CheckType.BASIC, error, (time.perf_counter() - started) * 1000)
    issues: list[str] = []
    status, score = CheckStatus.HEALTHY, 1.0
    models = details.get("models")
    if models is not None and target.model_name and models and target.model_name not in models:
        status, score = CheckStatus.DEGRADED, 0.5
        issues.append(f"model {target.model_name!r} is not in the endpoint's model list")
    if latency > context.response_time_warning_ms:
        status, score = CheckStatus.DEGRADED, min(score, 0.7)
        issues.append(f"slow answer: {latency:.0f} ms > {context.response_time_warning_ms:.0f} ms")
    return CheckResult(CheckType.BASIC, status, score, round(latency, 2), issues, details, api_exercised=True)


async def latency_check(client: httpx.AsyncClient, target: ProviderTarget, context: CheckContext) -> CheckResult:
    samples: list[float] = []
    errors: list[ProviderError] = []
    for _ in range(max(1, context.latency_samples)):
        try:
            latency, _details = await _probe(client, target)
        except ProviderError as error:
            if error.kind == ErrorKind.AUTH:
                return _failure(CheckType.LATENCY, error, None)
            errors.append(error)
        else:
            samples.append(latency)
    if not samples:
        return _failure(CheckType.LATENCY, errors[0], None)
    median = statistics.median(samples)
    status, score = latency_score(median, context)
    issues = []
    if median > context.response_time_warning_ms:
        issues.append(f"median latency {median:.0f} ms over the {context.response_time_warning_ms:.0f} ms warning")
    if errors:
        status = CheckStatus.DEGRADED
        score = round(score * len(samples) / (len(samples) + len(errors)), 4)
        issues.append(f"{len(errors)} of {len(samples) + len(errors)} probes failed: {errors[0]}")
    details = {
        "samples_ms": [round(s, 2) for s in samples],
        "median_ms": round(median, 2),
        "max_ms": round(max(samples), 2),
    }
    return CheckResult(CheckType.LATENCY, status, score, round(median, 2), issues, details, api_exercised=True)


async def load_check(client: httpx.AsyncClient, target: ProviderTarget, context: CheckContext) -> CheckResult:
    """Utilisation from the registry; queue figures from the server itself where it publishes them (vLLM).

    The load figures say nothing about whether the API answers (hosted APIs publish no metrics, so
    there would be no call at all), so the check first makes basic's probe: a provider that fails it
    fails this check too, instead of looking healthy on an idle registry row.
    """
    started = time.perf_counter()
    try:
        latency, _details = await _probe(client, target)
    except ProviderError as error:
        return _failure(CheckType.LOAD, error, (time.perf_counter() - started) * 1000)
    capacity = max(1, context.max_concurrent_requests)
    utilisation = context.current_load / capacity
    details: dict[str, Any] = {
        "utilization": round(utilisation, 4),
        "current_load": context.current_load,
        "capacity": capacity,
        "probe_ms": round(latency, 2),
    }
    issues: list[str] = []
    waiting = 0.0
    try:
        metrics = await adapter_for(target.provider_type).server_metrics(client, target)
    except ProviderError as error:
        if error.kind in (ErrorKind.CONNECTION, ErrorKind.TIMEOUT, ErrorKind.AUTH):
            return _failure(CheckType.LOAD, error, None)
        metrics = None
        issues.append(f"server metrics unavailable: {error}")
    if metrics is not None:
        waiting = metrics.num_requests_waiting or 0.0
        details.update(
            metrics_ms=round(metrics.latency_ms, 2),
            num_requests_running=metrics.num_requests_running,
            num_requests_waiting=metrics.num_requests_waiting,
            gpu_cache_usage_perc=metrics.gpu_cache_usage_perc,
        )
        if metrics.gpu_cache_usage_perc is not None and metrics.gpu_cache_usage_perc >= 0.95:
            issues.append(f"GPU KV cache {metrics.gpu_cache_usage_perc:.0%} full")
    score = round(max(0.0, 1.0 - utilisation) / (1.0 + waiting / capacity), 4)
    status = CheckStatus.HEALTHY
    if utilisation >= 0.9:
        status = CheckStatus.DEGRADED
        issues.append(f"utilisation {utilisation:.0%} of {capacity} concurrent requests")
    if waiting > capacity:
        status = CheckStatus.DEGRADED
        issues.append(f"{waiting:.0f} requests waiting in the server's queue")
    return CheckResult(CheckType.LOAD, status, score, round(latency, 2), issues, details, api_exercised=True)


async def comprehensive_check(client: httpx.AsyncClient, target: ProviderTarget, context: CheckContext) -> CheckResult:
    """A real minimal completion whose reply shape is verified."""
    adapter = adapter_for(target.provider_type)
    started = time.perf_counter()
    try:
        reply = await adapter.chat(client, target, COMPREHENSIVE_PROMPT, max_tokens=COMPREHENSIVE_MAX_TOKENS)
    except ProviderError as error:
        return _failure(CheckType.COMPREHENSIVE, error, (time.perf_counter() - started) * 1000)
    status, score = latency_score(reply.latency_ms, context)
    issues: list[str] = []
    details = {
        "finish_reason": reply.finish_reason,
        "completion_tokens": reply.usage.completion_tokens,
        "prompt_tokens": reply.usage.prompt_tokens,
        "reasoning": reply.reasoning,
        "model": reply.model,
    }
    if reply.reasoning_only:
        issues.append("reasoning model spent the whole budget thinking (counted as a valid reply)")
    elif not reply.content.strip():
        status, score = CheckStatus.DEGRADED, min(score, 0.5)
        issues.append(f"empty reply (finish_reason {reply.finish_reason!r})")
    if reply.usage.total_tokens == 0:
        issues.append("the reply carried no token usage")
    if reply.latency_ms > context.response_time_warning_ms:
        issues.append(f"completion took {reply.latency_ms:.0f} ms")
    return CheckResult(
        CheckType.COMPREHENSIVE, status, score, round(reply.latency_ms, 2), issues, details, api_exercised=True
    )


CHECKS = {
    CheckType.BASIC: basic_check,
    CheckType.LATENCY: latency_check,
    CheckType.LOAD: load_check,
    CheckType.COMPREHENSIVE: comprehensive_check,
}


# API calls each check type makes, for its deadline; latency makes one per sample.
_CALLS = {CheckType.BASIC: 1, CheckType.LOAD: 2, CheckType.COMPREHENSIVE: 1}


def check_deadline(check_type: str, *, timeout: float, context: CheckContext) -> float:
    """Seconds a whole check may take: the instance's timeout for each API call it makes."""
    calls = max(1, context.latency_samples) if check_type == CheckType.LATENCY else _CALLS[CheckType(check_type)]
    return timeout * calls


async def run_check(
    client: httpx.AsyncClient, target: ProviderTarget, check_type: str, context: CheckContext
) -> CheckResult:
    """Run one check within its deadline; anything unexpected becomes an `unknown` result, never an exception."""
    try:
        deadline = check_deadline(check_type, timeout=target.timeout, context=context)
        started = time.perf_counter()
        async with asyncio.timeout(deadline):
            return await CHECKS[CheckType(check_type)](client, target, context)
    except TimeoutError:
        elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
        issue = f"no complete answer within the check's {deadline:g} s deadline"
        return CheckResult(check_type, CheckStatus.UNHEALTHY, 0.0, elapsed_ms, [issue], {}, ErrorKind.TIMEOUT)
    except ProviderError as error:
        return _failure(check_type, error, None)
    except Exception as exc:  # a bug in a check must not stop a sweep
        return CheckResult(check_type, CheckStatus.UNKNOWN, 0.0, None, [f"check failed: {type(exc).__name__}: {exc}"])
