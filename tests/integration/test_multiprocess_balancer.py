"""Two web processes (uvicorn serving ishchat.asgi:application) share one
database and one Redis: the round-robin position, breaker state and rate
limits are fleet-wide, not per process.

Set-up, once for the module:

- a scratch SQLite file migrated for the two servers (pytest-django's test
  database lives in this process's transaction, which they cannot see);
- Redis from REDIS_URL, or redis://127.0.0.1:6379/14 when the run has none
  (the embedded-default CI run), under a balancer key prefix and a cache
  prefix of this run's own, deleted afterwards;
- a settings module written to a temporary directory that sets
  BALANCER_KEY_PREFIX (settings.py reads no environment variable for it) and
  routes /v1/ to the gateway's Django views (gateway.urls), which the root
  URLconf does not include yet.

Instances are registered and health-checked through process A's API against
the simulated provider, as an operator would; traffic goes through both
processes' select-instance and /v1/chat/completions.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from django.conf import settings

from tests.integration.conftest import web_command

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FALLBACK_REDIS_URL = "redis://127.0.0.1:6379/14"
API_KEY = settings.BACKEND_API_KEY
RPM = 5
# The servers get their database and Redis from this test, and no metrics port:
# two processes cannot both bind INSTANCE_MANAGER_METRICS_PORT (ishchat.asgi starts it).
CHILD_ENV_DROPPED = frozenset(
    {
        "DATABASE_URL",
        "REDIS_HOST",
        "REDIS_PORT",
        "REDIS_PASSWORD",
        "PYTEST_XDIST_WORKER",
        "INSTANCE_MANAGER_METRICS_PORT",
    }
)
FAILURE_THRESHOLD = 4

SETTINGS_MODULE = """
import os

from ishchat.settings import *  # noqa: F403

BALANCER_KEY_PREFIX = os.environ["MP_BALANCER_KEY_PREFIX"]
ROOT_URLCONF = "mp_urls"
"""

URLS_MODULE = """
from django.urls import include, path

from ishchat.urls import handler404, handler500, urlpatterns as base  # noqa: F401

urlpatterns = [path("", include("gateway.urls")), *base]
"""


@dataclass
class WebProcess:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path
    client: httpx.Client

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self.client.post(path, json=body)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.client.get(path, params=params)

    def select(self, model: str, **body: Any) -> httpx.Response:
        return self.post("/api/instances/select-instance", {"provider_type": "openai", "model_name": model, **body})

    def chat(self, model: str) -> httpx.Response:
        return self.post("/v1/chat/completions", {"model": model, "messages": [{"role": "user", "content": "Hi."}]})

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


@dataclass
class Fleet:
    a: WebProcess
    b: WebProcess
    redis_url: str
    prefix: str


def _redis_url() -> str:
    url = os.environ.get("REDIS_URL") or FALLBACK_REDIS_URL
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.skip(f"Redis is not reachable at {url} ({exc}); two web processes need one Redis to share state")
    finally:
        client.close()
    return url


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(name: str, env: dict[str, str], workdir: Path) -> WebProcess:
    port = _free_port()
    log = workdir / f"web-{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            web_command(port),
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed as a whole
        )
    url = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=url, headers={"X-API-Key": API_KEY}, timeout=30.0, trust_env=False)
    return WebProcess(name, process, url, log, client)


def _wait_until_serving(web: WebProcess, deadline: float) -> None:
    while time.monotonic() < deadline:
        if web.process.poll() is not None:
            pytest.fail(f"web process {web.name} exited with {web.process.returncode}:\n{web.output()}")
        try:
            web.client.get("/health")
            return
        except httpx.TransportError:
            time.sleep(0.1)
    pytest.fail(f"web process {web.name} did not answer within the deadline:\n{web.output()}")


def _stop(web: WebProcess) -> None:
    web.client.close()
    if web.process.poll() is not None:
        return
    os.killpg(web.process.pid, signal.SIGTERM)
    try:
        web.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(web.process.pid, signal.SIGKILL)
        web.process.wait(timeout=10)


@pytest.fixture(scope="module")
def two_web_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    redis_url = _redis_url()
    run = uuid.uuid4().hex[:12]
    prefix = f"test:mp:{run}:lb:"
    cache_prefix = f"test:mp:{run}:cache"
    workdir = tmp_path_factory.mktemp("multiprocess")
    (workdir / "mp_settings.py").write_text(SETTINGS_MODULE)
    (workdir / "mp_urls.py").write_text(URLS_MODULE)
    env = {key: value for key, value in os.environ.items() if key not in CHILD_ENV_DROPPED}
    env.update(
        DJANGO_SETTINGS_MODULE="mp_settings",
        PYTHONPATH=os.pathsep.join([str(workdir), str(ROOT)]),
        DATABASE_URL=f"sqlite:///{workdir / 'shared.sqlite3'}",
        REDIS_URL=redis_url,
        MP_BALANCER_KEY_PREFIX=prefix,
        INSTANCE_MANAGER_CACHE_PREFIX=cache_prefix,
        INSTANCE_MANAGER_DOTENV="false",
        INSTANCE_MANAGER_VAR_DIR=str(workdir / "var"),
        INSTANCE_MANAGER_LOG_DIR=str(workdir / "logs"),
        INSTANCE_MANAGER_API_RATE_LIMIT="100000/min",
        CELERY_TASK_ALWAYS_EAGER="true",
    )
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr

    a, b = _start("a", env, workdir), _start("b", env, workdir)
    try:
        deadline = time.monotonic() + 60
        _wait_until_serving(a, deadline)
        _wait_until_serving(b, deadline)
        yield Fleet(a, b, redis_url, prefix)
    finally:
        _stop(a)
        _stop(b)
        client = redis.Redis.from_url(redis_url)
        keys = [
            *client.scan_iter(match=f"{prefix}*", count=1000),
            *client.scan_iter(match=f"{cache_prefix}*", count=1000),
        ]
        if keys:
            client.unlink(*keys)
        client.close()


def register(web: WebProcess, sim_server: Any, name: str, model: str, **options: Any) -> str:
    """Register through the API, then health-check until healthy; the instance id."""
    sim_server.configure(name, models=[model])
    response = web.post(
        "/api/instances/register",
        {
            "provider_type": "openai",
            "model_name": model,
            "instance_name": name,
            "endpoint_url": sim_server.base_url(name, provider="openai"),
            "api_key": "sk-multiprocess-0000000000",
            **options,
        },
    )
    assert response.status_code == 201, response.text
    instance_id = response.json()["instance_id"]
    for _ in range(5):
        check = web.post(f"/api/instances/{instance_id}/health-check", {})
        assert check.status_code == 200, check.text
        if web.get(f"/api/instances/{instance_id}").json()["status"] == "healthy":
            return instance_id
    pytest.fail(f"{name} did not become healthy: {web.get(f'/api/instances/{instance_id}').text}")


def wait_until_both_see(fleet: Fleet, model: str, count: int) -> None:
    """Each process rebuilds its registry snapshot, and its gateway its routing context, when the
    shared registry version moves; wait for both processes to see `count` eligible instances and
    their gateways to list the model. (least_connections: a selection that does not move the
    round-robin position.)"""
    deadline = time.monotonic() + 15
    for web in (fleet.a, fleet.b):
        while True:
            selection = web.select(model, strategy="least_connections")
            listed = [entry["id"] for entry in web.get("/v1/models").json()["data"]]
            if selection.status_code == 200 and selection.json()["eligible_instances"] == count and model in listed:
                break
            assert time.monotonic() < deadline, f"{web.name} sees {selection.text} and lists {listed}"
            time.sleep(0.1)


def test_two_web_processes_share_the_round_robin_position(two_web_processes: Fleet, sim_server: Any) -> None:
    fleet = two_web_processes
    for name in ("rr-1", "rr-2", "rr-3"):
        register(fleet.a, sim_server, name, "rr-model")
    wait_until_both_see(fleet, "rr-model", 3)

    picked = []
    for turn in range(12):
        web = fleet.a if turn % 2 == 0 else fleet.b
        response = web.select("rr-model", strategy="round_robin")
        assert response.status_code == 200, response.text
        picked.append(response.json()["selected_instance"]["instance_name"])

    # One shared position: the combined sequence cycles through the pool. Two
    # private positions would interleave to rr-1, rr-1, rr-2, rr-2, ...
    assert sorted(picked[:3]) == ["rr-1", "rr-2", "rr-3"], picked
    assert picked == picked[:3] * 4, picked


def test_failures_seen_by_both_processes_open_one_shared_breaker(two_web_processes: Fleet, sim_server: Any) -> None:
    fleet = two_web_processes
    config = fleet.a.post(
        "/api/instances/load-balancer/configs",
        {"provider_type": "openai", "model_name": "brk-model", "breaker_failure_threshold": FAILURE_THRESHOLD},
    )
    assert config.status_code == 201, config.text
    failing = register(fleet.a, sim_server, "brk-failing", "brk-model")
    wait_until_both_see(fleet, "brk-model", 1)
    sim_server.configure("brk-failing", models=["brk-model"], failure_rate=1.0)  # every reply a 500 from now on
    before = sim_server.stats("brk-failing")["total"]  # the health checks'

    statuses = [web.chat("brk-model").status_code for web in (fleet.a, fleet.b) * (FAILURE_THRESHOLD // 2)]

    # Each process saw FAILURE_THRESHOLD / 2 failures: only a shared count reaches the threshold.
    assert statuses == [502] * FAILURE_THRESHOLD
    for web in (fleet.a, fleet.b):
        refused = web.chat("brk-model")
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "all_breaker_open"
        selection = web.select("brk-model")
        assert (selection.status_code, selection.json()["code"]) == (503, "all_breaker_open")
    assert sim_server.stats("brk-failing")["total"] - before == FAILURE_THRESHOLD  # nothing reached it once open
    breakers = fleet.b.get("/api/instances/load-balancer/breakers", model_name="brk-model").json()
    assert [(row["instance_id"], row["phase"]) for row in breakers["results"]] == [(failing, "open")]

    register(fleet.a, sim_server, "brk-fine", "brk-model")
    wait_until_both_see(fleet, "brk-model", 1)  # one eligible of two: the open one stays skipped
    for web in (fleet.a, fleet.b):
        picked = web.select("brk-model", strategy="round_robin").json()["selected_instance"]["instance_name"]
        assert picked == "brk-fine"
        deadline = time.monotonic() + 15
        while (reply := web.chat("brk-model")).status_code == 503:  # until its gateway routes to brk-fine too
            assert time.monotonic() < deadline, reply.text
            time.sleep(0.1)
        assert reply.status_code == 200, reply.text
        assert reply.headers["x-instance-id"] != failing
    assert sim_server.stats("brk-failing")["total"] - before == FAILURE_THRESHOLD


def test_a_requests_per_minute_limit_holds_across_both_processes(two_web_processes: Fleet, sim_server: Any) -> None:
    fleet = two_web_processes
    # The whole minute's worth at once (the default burst is a tenth), so the fleet-wide count is exact.
    burst = {"providers": {"openai": {"rate_limits": {"requests_burst": RPM}}}}
    assert fleet.a.client.patch("/api/config", json=burst).status_code == 200

    def burst_seen_by_b() -> bool:  # each process reloads its configuration within its cache TTL (5 s)
        config = fleet.b.client.get("/api/config").json()["effective"]
        return config["providers"]["openai"]["rate_limits"]["requests_burst"] == RPM

    deadline = time.monotonic() + 15
    while not burst_seen_by_b():
        assert time.monotonic() < deadline, "process b never saw the configuration change"
        time.sleep(0.2)
    register(fleet.a, sim_server, "rl-1", "rl-model", requests_per_minute=RPM)
    wait_until_both_see(fleet, "rl-model", 1)
    before = sim_server.stats("rl-1")["total"]

    answered: dict[str, int] = {"a": 0, "b": 0}
    refusals = []
    for turn in range(2 * RPM):
        web = fleet.a if turn % 2 == 0 else fleet.b
        response = web.chat("rl-model")
        if response.status_code == 200:
            answered[web.name] += 1
        else:
            refusals.append((response.status_code, response.json()["error"]["code"]))

    # One limit of RPM for the fleet; per-process limits would let 2 x RPM through.
    assert sum(answered.values()) == RPM, (answered, refusals)
    assert answered["a"] > 0 and answered["b"] > 0, answered
    assert refusals == [(503, "all_rate_limited")] * RPM
    assert sim_server.stats("rl-1")["total"] - before == RPM
    for web in (fleet.a, fleet.b):
        response = web.select("rl-model")
        assert (response.status_code, response.json()["code"]) == (503, "all_rate_limited"), web.name
