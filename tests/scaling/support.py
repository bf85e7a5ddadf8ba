"""Helpers of the auto-scaling tests: groups, instances (on the simulated provider where a health
check is involved), request logs and load checks. The fixtures (now, webhook, kube) are in
conftest.py beside this."""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import count
from typing import Any

from instances.choices import CheckStatus, CheckType, InstanceStatus, RequestStatus
from instances.models import AIInstance, HealthCheck, RequestLog
from instances.services import instance_loads_publish
from scaling.models import ProviderGroup

_numbers = count(1)
# The name the tests publish loads under, as a web process would (gateway/load.py).
PUBLISHER = "tests:0"

# Target tracking (scale down below 0.5) with short cooldowns, so one evaluation decides.
TRACKING: dict[str, Any] = {"scale_down_threshold": 0.5, "scale_up_cooldown": 60, "scale_down_cooldown": 120,
            "scale_down_stabilization_seconds": 0}


def make_group(name: str | None = None, **fields: Any) -> ProviderGroup:
    values: dict[str, Any] = {
        "group_name": name or f"group-{next(_numbers)}",
        "provider_type": "openai",
        "min_instances": 1,
        "max_instances": 10,
        "auto_scaling_enabled": True,
    }
    values.update(fields)
    return ProviderGroup.objects.create(**values)


def make_member(
    group: ProviderGroup | None,
    name: str | None = None,
    *,
    status: str = InstanceStatus.HEALTHY,
    endpoint_url: str = "http://127.0.0.1:9/v1",
    **fields: Any,
) -> AIInstance:
    """A registered instance written straight to the table (no provider is called). With
    ``current_load`` the load counts as just published by a web process (gateway/load.py)."""
    values: dict[str, Any] = {"max_concurrent_requests": 10, "provider_type": "openai", "model_name": "sim-model"}
    values.update(fields)
    instance = AIInstance.objects.create(
        instance_name=name or f"inst-{next(_numbers)}", endpoint_url=endpoint_url, status=status, group=group,
        **values,
    )
    if "current_load" in fields:
        instance_loads_publish(loads={instance.pk: fields["current_load"]}, publisher=PUBLISHER)
    return instance


def make_sim_member(sim_server: Any, group: ProviderGroup, name: str, *, status: str, **fields: Any) -> AIInstance:
    """An instance served by the simulated provider under ``name``."""
    return make_member(group, name, status=status, endpoint_url=sim_server.base_url(name, provider="openai"),
                       **fields)


def add_requests(instance: AIInstance, *, at: datetime, ok: int = 0, errors: int = 0,
                 latency_ms: float | list[float] = 100.0) -> None:
    latencies = latency_ms if isinstance(latency_ms, list) else [latency_ms] * ok
    rows = [
        RequestLog(request_id=f"ok-{next(_numbers)}", instance=instance, status=RequestStatus.SUCCESS,
                   upstream_latency_ms=value, total_latency_ms=value + 5, created_at=at)
        for value in latencies
    ]
    rows += [
        RequestLog(request_id=f"err-{next(_numbers)}", instance=instance, status=RequestStatus.ERROR, created_at=at)
        for _ in range(errors)
    ]
    RequestLog.objects.bulk_create(rows)


def add_load_check(instance: AIInstance, *, at: datetime, waiting: float | None) -> HealthCheck:
    return HealthCheck.objects.create(
        instance=instance, check_type=CheckType.LOAD, status=CheckStatus.HEALTHY, score=1.0,
        details={"utilization": 0.5, "num_requests_waiting": waiting}, checked_at=at,
    )


def set_load(group: ProviderGroup, load: int, *, at: datetime | None = None) -> None:
    """Every serving instance of the group at ``load`` requests in flight, as a web process publishes
    it (at ``at``, default now)."""
    serving = AIInstance.objects.filter(group=group, status__in=[InstanceStatus.HEALTHY, InstanceStatus.DEGRADED])
    loads = dict.fromkeys(serving.values_list("pk", flat=True), load)
    instance_loads_publish(loads=loads, publisher=PUBLISHER, now=at)



def add_recorded_traffic(instance: AIInstance, *, minutes: int, busy_from: int, quiet: int, busy: int) -> None:
    """`minutes` of requests ending now: `quiet` a minute, then `busy` a minute for the last `busy_from`."""
    from django.utils import timezone

    now = timezone.now()
    for minutes_ago in range(minutes, 0, -1):
        add_requests(instance, at=now - timedelta(minutes=minutes_ago), ok=busy if minutes_ago < busy_from else quiet)
