"""Alerting fixtures: a fleet factory, a fixed clock and a real webhook receiver on loopback."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from instances.choices import CheckStatus, CheckType, InstanceStatus, RequestStatus
from instances.models import AIInstance, HealthCheck, RequestLog
from scaling.models import ProviderGroup
from tests.support.webhook import WebhookReceiver, webhook_receiver


@pytest.fixture
def now() -> datetime:
    """The evaluation clock: a little after the rows the tests create with real timestamps."""
    return timezone.now() + timedelta(seconds=1)


_counter = iter(range(1, 1_000_000))


def make_instance(
    name: str | None = None, *, status: str = InstanceStatus.HEALTHY, group: ProviderGroup | None = None, **fields: Any
) -> AIInstance:
    return AIInstance.objects.create(
        provider_type="openai_compatible",
        model_name="llama-3",
        instance_name=name or f"vllm-{next(_counter)}",
        endpoint_url="http://127.0.0.1:9/v1",
        status=status,
        group=group,
        **fields,
    )


def make_group(name: str | None = None) -> ProviderGroup:
    return ProviderGroup.objects.create(group_name=name or f"group-{next(_counter)}", provider_type="openai_compatible")


def add_requests(
    instance: AIInstance,
    *,
    at: datetime,
    ok: int = 0,
    errors: int = 0,
    timeouts: int = 0,
    latency_ms: float | list[float] = 100.0,
) -> None:
    latencies = latency_ms if isinstance(latency_ms, list) else [latency_ms] * ok
    rows = [
        RequestLog(
            request_id=f"ok-{instance.pk}-{i}",
            instance=instance,
            status=RequestStatus.SUCCESS,
            status_code=200,
            upstream_latency_ms=latencies[i],
            total_latency_ms=latencies[i] + 5,
            created_at=at,
        )
        for i in range(len(latencies))
    ]
    rows += [
        RequestLog(
            request_id=f"err-{instance.pk}-{i}",
            instance=instance,
            status=RequestStatus.ERROR,
            status_code=502,
            created_at=at,
        )
        for i in range(errors)
    ]
    rows += [
        RequestLog(request_id=f"to-{instance.pk}-{i}", instance=instance, status=RequestStatus.TIMEOUT, created_at=at)
        for i in range(timeouts)
    ]
    RequestLog.objects.bulk_create(rows)


def add_check(
    instance: AIInstance,
    *,
    at: datetime,
    status: str = CheckStatus.HEALTHY,
    check_type: str = CheckType.LATENCY,
    response_time_ms: float | None = 100.0,
) -> HealthCheck:
    return HealthCheck.objects.create(
        instance=instance,
        check_type=check_type,
        status=status,
        score=1.0 if status == CheckStatus.HEALTHY else 0.0,
        response_time_ms=response_time_ms,
        checked_at=at,
    )


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    with webhook_receiver("/hooks/alerts") as receiver:
        yield receiver


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL nothing listens on (the port was just free)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks"
