"""PostgreSQL connections stay bounded under concurrency: each web process borrows from one psycopg pool.

Two uvicorn processes, each with INSTANCE_MANAGER_DB_POOL_MAX_SIZE=4, take 200 concurrent
`GET /api/instances/status` calls (and 40 concurrent `/v1` calls, whose key lookups and
RequestLog rows need the database too). A sampler counts the sessions the two processes hold in
pg_stat_activity (tagged with PGAPPNAME) every 20 ms: never more than 2 x 4, every call answered
200. Under the old `conn_max_age=60` each concurrent request kept a connection of its own, and 100
concurrent calls exhausted PostgreSQL (issue 9).
"""

from __future__ import annotations

import asyncio
import collections
import threading
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import psycopg
import pytest
from django.db import connection

from tests.integration.conftest import (
    STARTUP_SECONDS,
    Process,
    child_env,
    database_url,
    free_port,
    health_ok,
    healthy_instances,
    wait_for,
    web_command,
)

pytestmark = [pytest.mark.integration]

POOL_MAX_SIZE = 4
PROCESSES = 2
API_CALLS = 200
GATEWAY_CALLS = 40
MODEL = "pool-model"


class Sessions:
    """The peak number of PostgreSQL sessions tagged `application_name`, sampled in a thread of its own."""

    def __init__(self, application_name: str) -> None:
        self.application_name = application_name
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def count(self) -> int:
        with psycopg.connect(database_url(), autocommit=True) as conn:
            return self._count(conn)

    def _count(self, conn: psycopg.Connection) -> int:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (self.application_name,)
        ).fetchone()
        return int(row[0]) if row else 0

    def __enter__(self) -> Sessions:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        with psycopg.connect(database_url(), autocommit=True) as conn:
            while not self._stop.wait(0.02):
                self.peak = max(self.peak, self._count(conn))
                self.samples += 1


@pytest.fixture
def webs(transactional_db: None, sim_server, tmp_path: Path) -> Iterator[tuple[list[int], str, str]]:
    if connection.vendor != "postgresql":
        pytest.skip("the connection pool is PostgreSQL's (DATABASE_URL=postgresql://...)")
    from accounts.services import api_key_create

    healthy_instances(sim_server, MODEL, ("pool-a",), max_concurrent_requests=GATEWAY_CALLS)
    _, key = api_key_create(name="pool-client")  # a project key: its check reads the database

    application_name = f"pool-test-{uuid.uuid4().hex[:8]}"
    env = child_env(
        PGAPPNAME=application_name,  # libpq tags every session of the children with it
        INSTANCE_MANAGER_DB_POOL_MIN_SIZE="1",
        INSTANCE_MANAGER_DB_POOL_MAX_SIZE=str(POOL_MAX_SIZE),
        INSTANCE_MANAGER_API_RATE_LIMIT="100000/min",
        INSTANCE_MANAGER_LOG_DIR=str(tmp_path / "logs"),
        CELERY_TASK_ALWAYS_EAGER="true",
    )
    env.pop("INSTANCE_MANAGER_METRICS_PORT", None)
    ports, processes = [], []
    try:
        for number in range(PROCESSES):
            port = free_port()
            process = Process.start(f"web {number}", web_command(port), env, tmp_path / f"web-{number}.log")
            processes.append(process)
            ports.append(port)
            wait_for(partial(health_ok, f"http://127.0.0.1:{port}"), timeout=STARTUP_SECONDS, what="/health",
                     process=process)  # fmt: skip
        yield ports, key, application_name
    finally:
        for process in processes:
            process.stop()


async def _storm(ports: list[int], key: str) -> list[int]:
    limits = httpx.Limits(max_connections=API_CALLS + GATEWAY_CALLS)
    async with httpx.AsyncClient(headers={"X-API-Key": key}, timeout=60.0, limits=limits, trust_env=False) as client:
        calls = [client.get(f"http://127.0.0.1:{ports[n % PROCESSES]}/api/instances/status") for n in range(API_CALLS)]
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi."}]}
        calls += [
            client.post(f"http://127.0.0.1:{ports[n % PROCESSES]}/v1/chat/completions", json=body)
            for n in range(GATEWAY_CALLS)
        ]
        responses = await asyncio.gather(*calls)
    return [response.status_code for response in responses]


@pytest.mark.django_db(transaction=True)
def test_200_concurrent_api_calls_over_two_processes_hold_at_most_the_pools_connections(webs):
    ports, key, application_name = webs
    with Sessions(application_name) as sessions:
        statuses = asyncio.run(_storm(ports, key))
        after = sessions.count()

    assert statuses.count(200) == API_CALLS + GATEWAY_CALLS, collections.Counter(statuses)
    assert sessions.samples > 10
    assert 1 <= sessions.peak <= PROCESSES * POOL_MAX_SIZE, sessions.peak
    assert after <= PROCESSES * POOL_MAX_SIZE
