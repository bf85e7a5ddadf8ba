"""Starting the simulator from the command line: flags become instance defaults; the server really serves."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.core.management.base import CommandError

from simulator.management.commands.simulate_providers import Command
from simulator.server import Behaviour, SimulatorApp, behaviour_from_options, uvicorn_config
from simulator.testing import running_simulator

REPO_ROOT = Path(__file__).resolve().parents[2]


def parse(*argv: str) -> dict[str, object]:
    return vars(Command().create_parser("manage.py", "simulate_providers").parse_args(argv))


def test_flags_set_the_defaults_every_instance_starts_from() -> None:
    options = parse(
        "--port", "9200", "--latency-ms", "100", "--failure-rate", "0.1", "--models", "glm-4,gpt-4o",
        "--no-metrics-enabled", "--required-api-key", "sk-demo",
    )  # fmt: skip

    behaviour = behaviour_from_options(options)

    assert options["port"] == 9200
    assert options["host"] == "127.0.0.1"
    assert behaviour == Behaviour(
        latency_ms=100.0,
        failure_rate=0.1,
        models=["glm-4", "gpt-4o"],
        metrics_enabled=False,
        required_api_key="sk-demo",
    )


def test_no_flags_means_the_plain_defaults() -> None:
    assert behaviour_from_options(parse()) == Behaviour()


def test_an_out_of_range_flag_is_a_command_error_before_anything_listens() -> None:
    with pytest.raises(CommandError, match="failure_rate must be within"):
        Command().handle(**parse("--failure-rate", "1.5"))


def test_it_runs_on_uvloop_and_httptools_when_installed() -> None:
    pytest.importorskip("uvloop")
    pytest.importorskip("httptools")
    config = uvicorn_config(SimulatorApp(), host="127.0.0.1", port=0)
    config.load()

    assert config.http_protocol_class.__name__ == "HttpToolsProtocol"
    loop_factory = config.get_loop_factory()
    assert loop_factory is not None
    assert type(loop_factory()).__module__.startswith("uvloop")


def test_server_defaults_apply_to_instances_in_a_running_simulator() -> None:
    with running_simulator(Behaviour(reply_tokens=2, models=["only-model"])) as sim:
        assert sim.configure("a")["behaviour"]["models"] == ["only-model"]
        sim.reset()
        response = httpx.post(
            sim.base_url("a") + "/chat/completions",
            json={"model": "only-model", "messages": [{"role": "user", "content": "hi"}]},
        )

    assert response.json()["usage"]["completion_tokens"] == 2


@pytest.mark.integration
def test_the_module_serves_as_its_own_process() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "simulator.server", "--port", str(port), "--latency-ms", "5", "--log-level", "warning"],
        cwd=REPO_ROOT,
    )
    try:
        url = f"http://127.0.0.1:{port}/_control/instances/demo"
        deadline = time.monotonic() + 15.0
        while True:
            try:
                document = httpx.get(url, timeout=1.0).json()
                break
            except httpx.TransportError:
                assert process.poll() is None, "the simulator exited"
                assert time.monotonic() < deadline, "the simulator did not start"
                time.sleep(0.1)
        assert document["behaviour"]["latency_ms"] == 5.0
    finally:
        process.terminate()
        process.wait(timeout=10)
