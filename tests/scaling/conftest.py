"""Fixtures of the auto-scaling tests: a fixed clock, a webhook receiver and the Kubernetes
stand-in, on loopback. Helpers that make rows live in tests/scaling/support.py."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.utils import timezone

from tests.scaling.k8s_standin import KubeStandIn, running_standin
from tests.scaling.support import Received, WebhookReceiver


@pytest.fixture
def now() -> datetime:
    """The evaluation clock: a little after rows created with real timestamps."""
    return timezone.now() + timedelta(seconds=1)


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
