"""Size bounds at the edge, against the web process the Procfile starts (its command, run by a shell).

- A request head (request line and headers) over INSTANCE_MANAGER_MAX_HEADER_BYTES (64 KiB) is
  answered 431 and the connection closed; heads that never end do not grow the process.
- A body over the path's bound (1 MiB for /api) is answered 413 in the API's JSON shape before the
  client has sent it: at once when Content-Length says so, after the bound when it is streamed.
"""

from __future__ import annotations

import json
import os
import select
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from honcho.environ import parse_procfile

from ishchat.edge import MAX_BODY_BYTES
from tests.integration.conftest import REPO_ROOT, STARTUP_SECONDS, Process, child_env, free_port, wait_for

pytestmark = pytest.mark.integration

KiB = 1024
MiB = 1024 * KiB
HEAD_BOUND = 64 * KiB  # settings.MAX_REQUEST_HEADER_BYTES's default, which the child runs with


@dataclass
class Web:
    process: Process
    port: int

    def rss(self) -> int:
        """The server's resident memory in bytes."""
        status = Path(f"/proc/{self.process.popen.pid}/status").read_text()
        kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(kib) * KiB

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return sock


@pytest.fixture(scope="module")
def web(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    command = parse_procfile((REPO_ROOT / "Procfile").read_text()).processes["web"]
    port = free_port()
    venv_bin = str(Path(sys.executable).parent)
    env = child_env(BACKEND_HOST="127.0.0.1", BACKEND_PORT=str(port), PATH=venv_bin + os.pathsep + os.environ["PATH"])
    env.pop("INSTANCE_MANAGER_METRICS_PORT", None)
    env.pop("INSTANCE_MANAGER_MAX_HEADER_BYTES", None)
    log = tmp_path_factory.mktemp("edge") / "web.log"
    # exec: the shell becomes the server, so the pid is the server's (for its memory).
    process = Process.start("web", ["/bin/sh", "-c", f"exec {command}"], env, log)
    try:
        wait_for(lambda: _status(port, "/health") == 200, timeout=STARTUP_SECONDS, what="/health", process=process)
        yield Web(process, port)
    finally:
        process.stop()


def _status(port: int, path: str) -> int | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5).status_code
    except httpx.TransportError:
        return None


def head(method: str, path: str, *headers: tuple[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def send(sock: socket.socket, data: bytes) -> bool:
    """False once the server has closed the connection."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        return False
    return True


def read_response(sock: socket.socket, timeout: float = 5.0) -> tuple[int | None, dict[str, Any]]:
    """Status and JSON body of the response the server sends before closing; (None, {}) when none comes."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    if not data.startswith(b"HTTP/1.1 "):
        return None, {}
    _, _, body = data.partition(b"\r\n\r\n")
    return int(data[9:12]), json.loads(body) if body.startswith(b"{") else {}


def exchange(web: Web, request: bytes) -> tuple[int | None, dict[str, Any]]:
    with web.connect() as sock:
        send(sock, request)
        return read_response(sock)


def test_a_request_head_over_the_bound_is_answered_431(web: Web) -> None:
    under = head("GET", "/health", ("X-Pad", "a" * (HEAD_BOUND - 2 * KiB)))
    over = head("GET", "/health", ("X-Pad", "a" * 100_000))

    assert exchange(web, under)[0] == 200
    status, body = exchange(web, over)
    assert status == 431
    assert body["code"] == "request_header_too_large"
    assert exchange(web, head("GET", "/health"))[0] == 200  # and the server serves on


def test_heads_that_never_end_do_not_grow_the_process(web: Web) -> None:
    """Four connections each try to send a 50 MB header and stay open: the server stops reading each
    one at the bound, and its memory stays where it was (it grew by the full 200 MB before)."""
    attempt = 50 * MiB
    chunk = b"a" * MiB
    before = web.rss()
    connections, sent = [], []
    try:
        for _ in range(4):
            sock = web.connect()
            connections.append(sock)
            total = 0
            if send(sock, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: "):
                while total < attempt and send(sock, chunk):
                    total += len(chunk)
            sent.append(total)
        time.sleep(0.5)  # let the server take in whatever is still in flight
        grown = web.rss() - before
    finally:
        for sock in connections:
            sock.close()

    assert all(total < attempt for total in sent), sent
    assert grown < 16 * MiB, f"grew {grown / MiB:.1f} MiB"


@pytest.mark.django_db(transaction=True)
def test_a_body_over_the_bound_is_answered_413_before_the_client_sends_it(web: Web) -> None:
    api_key = ("X-API-Key", settings.BACKEND_API_KEY)
    json_type = ("Content-Type", "application/json")
    # Under the bound: the body reaches the API, which validates it (too much metadata, not too much body).
    registration = {"provider_type": "openai", "model_name": "m", "instance_name": "x", "endpoint_url": "http://x"}
    under = json.dumps(registration | {"metadata": {"pad": "a" * (MAX_BODY_BYTES - 4 * KiB)}}).encode()
    with web.connect() as sock:
        send(sock, head("POST", "/api/instances/register", api_key, json_type, ("Content-Length", str(len(under)))))
        send(sock, under)
        status, body = read_response(sock)
    assert status == 400 and "metadata" in body

    with web.connect() as sock:
        # 5 MiB declared, unauthenticated, 64 KiB sent: the answer comes without the rest.
        send(sock, head("POST", "/api/instances/register", json_type, ("Content-Length", str(5 * MiB))))
        send(sock, b"a" * 64 * KiB)
        status, body = read_response(sock)
    assert status == 413
    assert body == {"detail": f"The request body exceeds {MAX_BODY_BYTES} bytes.", "code": "request_too_large"}


def test_a_streamed_body_over_the_bound_is_cut_at_the_bound(web: Web) -> None:
    """Chunked, so no Content-Length to go by: the edge counts, and answers once past 1 MiB."""
    piece = b"a" * 64 * KiB
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    with web.connect() as sock:
        send(sock, head("POST", "/api/instances/register", ("Transfer-Encoding", "chunked")))
        sent = 0
        while sent < 5 * MiB and not select.select([sock], [], [], 0.02)[0] and send(sock, chunk):
            sent += len(piece)
        answered_early = sent < 5 * MiB
        if not answered_early:
            send(sock, b"0\r\n\r\n")
        status, body = read_response(sock)

    assert answered_early, "no answer before the whole 5 MiB was sent"
    assert status == 413 and body["code"] == "request_too_large"
    assert sent < MAX_BODY_BYTES + 2 * MiB  # what the server had read, plus what the sockets buffer
