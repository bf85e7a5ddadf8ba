"""Monitoring fixtures: small factories for instances, requests and checks at chosen times."""

from __future__ import annotations

from datetime import datetime
from itertools import count
from typing import Any

import pytest

from instances.choices import CheckStatus, CheckType, InstanceStatus, RequestStatus
from instances.models import AIInstance, HealthCheck, RequestLog
from scaling.models import ProviderGroup

_seq = count(1)


def make_instance(
    *, provider_type: str = "openai", model_name: str = "gpt-4o", status: str = InstanceStatus.HEALTHY, **fields: Any
) -> AIInstance:
    n = next(_seq)
    return AIInstance.objects.create(
        provider_type=provider_type,
        model_name=model_name,
        instance_name=fields.pop("instance_name", f"mon-{n}"),
        endpoint_url="http://127.0.0.1:9/v1",
        status=status,
        **fields,
    )


def make_group(**fields: Any) -> ProviderGroup:
    return ProviderGroup.objects.create(group_name=f"group-{next(_seq)}", provider_type="openai", **fields)


def add_request(
    instance: AIInstance | None,
    *,
    at: datetime,
    status: str = RequestStatus.SUCCESS,
    latency_ms: float | None = 100.0,
    prompt: int = 0,
    completion: int = 0,
    failover: bool = False,
    original: AIInstance | None = None,
) -> RequestLog:
    return RequestLog.objects.create(
        request_id=f"req-{next(_seq)}",
        instance=instance,
        original_instance=original,
        provider_type=instance.provider_type if instance else "openai",
        model_name=instance.model_name if instance else "gpt-4o",
        status=status,
        upstream_latency_ms=latency_ms,
        total_latency_ms=latency_ms,
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        failover=failover,
        created_at=at,
    )


def add_check(
    instance: AIInstance, *, at: datetime, status: str = CheckStatus.HEALTHY, check_type: str = CheckType.BASIC
) -> HealthCheck:
    return HealthCheck.objects.create(
        instance=instance,
        check_type=check_type,
        status=status,
        score=1.0 if status == CheckStatus.HEALTHY else 0.0,
        checked_at=at,
    )


@pytest.fixture
def pricing(db: None) -> None:
    """gpt-4o costs 0.005 per 1k prompt tokens and 0.015 per 1k completion tokens."""
    from configuration.selectors import config_cache_clear
    from configuration.services import config_update

    config_update(changes={"pricing": {"gpt-4o": {"input_per_1k": 0.005, "output_per_1k": 0.015}}}, updated_by="test")
    config_cache_clear()
