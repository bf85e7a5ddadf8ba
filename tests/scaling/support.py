"""Helpers and fixtures of the auto-scaling tests: groups, instances on the simulated provider,
request logs, a fixed clock, a webhook receiver and the Kubernetes stand-in, all on loopback.

Test modules import the fixtures they use from here (``from tests.scaling.support import ...``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count
from typing import Any

import pytest
from django.utils import timezone

from instances.choices import CheckStatus, CheckType, InstanceStatus, RequestStatus
from instances.models import AIInstance, HealthCheck, RequestLog
from scaling.models import ProviderGroup
from tests.scaling.k8s_standin import KubeStandIn, running_standin

_numbers = count(1)

# Target tracking (scale down below 0.5) with short cooldowns, so one evaluation decides.
TRACKING = {"scale_down_threshold": 0.5, "scale_up_cooldown": 60, "scale_down_cooldown": 120,
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
    """A registered instance written straight to the table (no provider is called)."""
    values: dict[str, Any] = {"max_concurrent_requests": 10, "provider_type": "openai", "model_name": "sim-model"}
    values.update(fields)
    return AIInstance.objects.create(
        instance_name=name or f"inst-{next(_numbers)}", endpoint_url=endpoint_url, status=status, group=group,
        **values,
    )


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


def set_load(group: ProviderGroup, load: int) -> None:
    """Every serving instance of the group at ``load`` requests in flight."""
    AIInstance.objects.filter(group=group, status__in=[InstanceStatus.HEALTHY, InstanceStatus.DEGRADED]).update(
        current_load=load
    )


@pytest.fixture
def now() -> datetime:
    """The evaluation clock: a little after rows created with real timestamps."""
    return timezone.now() + timedelta(seconds=1)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """A real HTTP server on 127.0.0.1 that records what it is sent and answers ``status``."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    status: int = 200


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            receiver.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            answer = b'{"ok": true}' if receiver.status < 400 else b"operator endpoint is down"
            self.send_response(receiver.status)
            if 300 <= receiver.status < 400:
                self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/scale"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def kube() -> Iterator[KubeStandIn]:
    with running_standin() as standin:
        yield standin
