"""The fault proxy the outage tests rely on: each mode does what it says, against a real echo server."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from tests.support.faultproxy import FaultProxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with FaultProxy("127.0.0.1", server.server_address[1]) as fault_proxy:
        yield fault_proxy
    server.shutdown()
    server.server_close()


def _roundtrip(port: int, payload: bytes = b"ping", timeout: float = 2.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        return sock.recv(4096)


def test_it_passes_bytes_through(proxy: FaultProxy) -> None:
    assert _roundtrip(proxy.port) == b"ping"


def test_a_cut_closes_open_connections_and_refuses_new_ones(proxy: FaultProxy) -> None:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
    sock.sendall(b"a")
    assert sock.recv(10) == b"a"
    proxy.cut()
    time.sleep(0.1)
    with pytest.raises(OSError):
        sock.sendall(b"b")
        if sock.recv(10) == b"":  # an orderly close reads as end of stream
            raise ConnectionResetError
    sock.close()
    with pytest.raises(OSError):
        if _roundtrip(proxy.port) == b"":
            raise ConnectionResetError
    proxy.heal()
    assert _roundtrip(proxy.port) == b"ping"


def test_a_blackhole_stalls_until_healed(proxy: FaultProxy) -> None:
    proxy.blackhole()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=0.5) as sock:
        sock.sendall(b"held")
        with pytest.raises(TimeoutError):
            sock.recv(10)
        proxy.heal()
        sock.settimeout(2)
        assert sock.recv(10) == b"held"


def test_a_delay_slows_each_chunk(proxy: FaultProxy) -> None:
    proxy.delay(0.3)
    began = time.monotonic()
    assert _roundtrip(proxy.port) == b"ping"
    assert time.monotonic() - began >= 0.55  # there and back
