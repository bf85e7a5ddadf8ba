"""Alerting fixtures: a fleet factory, a fixed clock and a real webhook receiver on loopback."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.utils import timezone

from instances.choices import CheckStatus, CheckType, InstanceStatus, RequestStatus
from instances.models import AIInstance, HealthCheck, RequestLog
from scaling.models import ProviderGroup


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


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """A real HTTP server on 127.0.0.1 that records what it is sent and answers `status`."""

    url: str
    received: list[Received] = field(default_factory=list)
    status: int = 200


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            receiver.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            answer = b'{"ok": true}' if receiver.status < 400 else b"receiver is down"
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
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/alerts"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL nothing listens on (the port was just free)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks"
