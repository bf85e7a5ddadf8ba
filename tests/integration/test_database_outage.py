"""A PostgreSQL outage, cut then black-holed, does not stop the data plane and loses no request log.

A uvicorn web process reaches the test database through a fault proxy, with two instances of
one model on the simulated provider and a project API key (whose check needs the database).
While the database is unreachable: `/v1` keeps routing on the last registry snapshot for a key
it verified lately, a key it never saw gets a 503 `database_unavailable` (not a 401 or a 500),
`/api` answers a 503 JSON `database_unavailable` within the pool's timeout, and `/health`
answers 503 naming the database within its probe's bound. Healed, everything is back without a
restart, a RequestLog row exists for every request answered during the outage, and the log
holds a line or two about the outage, no traceback.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import pytest
from django.db import connection

from ishchat.views import DATABASE_PROBE_SECONDS
from tests.integration.conftest import (
    STARTUP_SECONDS,
    Process,
    child_env,
    free_port,
    health_ok,
    healthy_instances,
    wait_for,
    web_command,
)
from tests.support.faultproxy import FaultProxy

pytestmark = [pytest.mark.integration]

MODEL = "db-outage-model"
POOL_TIMEOUT_SECONDS = 2


@dataclass
class Fleet:
    proxy: FaultProxy
    process: Process
    client: httpx.Client
    key: str
    unseen_key: str
    ids: list[str]

    def chat(self, key: str | None = None) -> httpx.Response:
        return self.client.post(
            "/v1/chat/completions",
            headers={"X-API-Key": key or self.key},
            json={"model": MODEL, "messages": [{"role": "user", "content": "Hi."}]},
        )

    def timed(self, method: str, path: str) -> tuple[float, httpx.Response]:
        started = time.monotonic()
        response = self.client.request(method, path, headers={"X-API-Key": self.key})
        return time.monotonic() - started, response

    def outage_lines(self) -> list[str]:
        return [line for line in self.process.log().splitlines() if "ishchat.outage" in line]


@pytest.fixture
def fleet(transactional_db: None, sim_server, tmp_path: Path) -> Iterator[Fleet]:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL=postgresql://...): SQLite is a file, not a server to cut")
    from accounts.services import api_key_create

    ids = healthy_instances(sim_server, MODEL, ("db-outage-a", "db-outage-b"))
    _, key = api_key_create(name="outage-client")
    _, unseen_key = api_key_create(name="never-used-before-the-outage")

    db = connection.settings_dict
    with FaultProxy(db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432)) as proxy:
        auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
        env = child_env(
            INSTANCE_MANAGER_DB_POOL_TIMEOUT=str(POOL_TIMEOUT_SECONDS),
            INSTANCE_MANAGER_API_RATE_LIMIT="100000/min",
            INSTANCE_MANAGER_LOG_DIR=str(tmp_path / "logs"),
            CELERY_TASK_ALWAYS_EAGER="true",
        )
        env["DATABASE_URL"] = f"postgresql://{auth}@127.0.0.1:{proxy.port}/{db['NAME']}"
        env.pop("INSTANCE_MANAGER_METRICS_PORT", None)
        port = free_port()
        process = Process.start("web", web_command(port), env, tmp_path / "web.log")
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30.0, trust_env=False)
        try:
            wait_for(partial(health_ok, str(client.base_url)), timeout=STARTUP_SECONDS, what="/health", process=process)
            yield Fleet(proxy, process, client, key, unseen_key, ids)
        finally:
            client.close()
            process.stop()


def _served(fleet: Fleet, count: int) -> list[str]:
    served = []
    for _ in range(count):
        response = fleet.chat()
        assert response.status_code == 200, response.text
        served.append(response.headers["x-instance-id"])
    return served


@pytest.mark.django_db(transaction=True)
def test_a_database_outage_keeps_routing_answers_503_and_loses_no_request_log(fleet):
    from instances.models import RequestLog

    answered = _served(fleet, 4)  # verifies the key and builds the registry snapshot
    assert set(answered) <= set(fleet.ids)

    for fault in (fleet.proxy.cut, fleet.proxy.blackhole):
        fault()
        answered += _served(fleet, 10)  # the last snapshot and the verified key

        unseen = fleet.chat(fleet.unseen_key)
        assert unseen.status_code == 503, unseen.text
        assert unseen.json()["error"]["code"] == "database_unavailable"

        elapsed, api = fleet.timed("GET", "/api/instances/status")
        assert api.status_code == 503, api.text
        assert api.json()["code"] == "database_unavailable"
        assert elapsed < POOL_TIMEOUT_SECONDS + 2, elapsed

        elapsed, health = fleet.timed("GET", "/health")
        assert health.status_code == 503 and "database" in health.json()["failed"], health.text
        assert elapsed < DATABASE_PROBE_SECONDS + 1, elapsed

    fleet.proxy.heal()
    healed = partial(health_ok, str(fleet.client.base_url))
    wait_for(healed, timeout=15, what="/health 200 after the heal", process=fleet.process)
    assert fleet.timed("GET", "/api/instances/status")[1].status_code == 200
    assert fleet.chat(fleet.unseen_key).status_code == 200  # /health's good probe ended the outage
    answered.append(fleet.chat().headers["x-instance-id"])

    def logged() -> bool:
        return RequestLog.objects.filter(model_name=MODEL, status_code=200).count() >= len(answered) + 1

    wait_for(logged, timeout=15, what="a RequestLog row for every answered request", process=fleet.process)
    assert RequestLog.objects.filter(model_name=MODEL, status_code=200).count() == len(answered) + 1

    log = fleet.process.log()
    lines = fleet.outage_lines()
    assert 1 <= sum("unreachable" in line for line in lines) <= 4, lines
    assert "Traceback" not in log, log[-4000:]
