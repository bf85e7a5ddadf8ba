"""The simulated provider inside a test process: a background server, a small control client, pytest fixtures.

Tests talk to it over loopback exactly as production talks to a provider, so
they exercise real sockets, timeouts and streams instead of mocked HTTP:

    def test_it_fails_over(sim_server):
        sim_server.configure("a", failure_rate=1.0)
        url = sim_server.base_url("a", provider="openai")  # an instance's endpoint_url
        ...
        assert sim_server.stats("a")["total"] == 1
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn

from .server import Behaviour, SimulatorApp, instance_base_url, uvicorn_config


class SimulatorClient:
    """Addresses and control of a running simulator; synchronous, for use in tests and scripts."""

    def __init__(self, root_url: str) -> None:
        self.root_url = root_url.rstrip("/")
        self._http = httpx.Client(base_url=self.root_url, timeout=10.0, trust_env=False)

    def base_url(self, name: str, provider: str = "openai") -> str:
        """The endpoint_url to register for instance `name` of the given provider type."""
        return instance_base_url(self.root_url, name, provider)

    def configure(self, name: str, **behaviour: Any) -> dict[str, Any]:
        """Replace the instance's behaviour (fields not given take the server defaults); returns its document."""
        response = self._http.put(f"/_control/instances/{name}", json=behaviour)
        if response.status_code == 400:
            raise ValueError(response.json()["error"])
        response.raise_for_status()
        return response.json()

    def stats(self, name: str) -> dict[str, Any]:
        """total, by_status, by_endpoint, in_flight, max_in_flight, client_disconnects, last_request."""
        response = self._http.get(f"/_control/instances/{name}")
        response.raise_for_status()
        return response.json()["stats"]

    def reset(self) -> None:
        """Every instance back to the server defaults with zeroed counters."""
        self._http.delete("/_control/instances").raise_for_status()

    def close(self) -> None:
        self._http.close()


@contextmanager
def running_simulator(defaults: Behaviour | None = None, *, seed: int | None = 0) -> Iterator[SimulatorClient]:
    """Serve the simulator on a free loopback port in a daemon thread for the duration of the block.

    The socket is bound before the thread starts, so there is no window in
    which another process could take the port.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = SimulatorApp(defaults, seed=seed)
    server = uvicorn.Server(uvicorn_config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="simulated-provider", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10.0
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("The simulated provider did not start.")
        time.sleep(0.01)
    client = SimulatorClient(f"http://127.0.0.1:{port}")
    try:
        yield client
    finally:
        client.close()
        server.should_exit = True
        thread.join(timeout=10.0)
        sock.close()


@pytest.fixture(scope="session")
def sim_server_session() -> Iterator[SimulatorClient]:
    """One simulator for the whole session (per xdist worker); use `sim_server` in tests."""
    with running_simulator() as client:
        yield client


@pytest.fixture
def sim_server(sim_server_session: SimulatorClient) -> SimulatorClient:
    """The session's simulator, reset so no behaviour or counter leaks in from an earlier test."""
    sim_server_session.reset()
    return sim_server_session
