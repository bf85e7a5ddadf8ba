"""The gateway's key check while the database cannot answer: keys verified lately keep working
for the stale TTL, others get a 503 in OpenAI's shape (never a 401 or a 500), one log line per outage."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import MutableMapping
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import OperationalError

from accounts.authentication import principal_for_key
from accounts.services import api_key_create
from gateway.asgi import GatewayApp
from gateway.auth import CACHE_SECONDS, STALE_SECONDS, Authenticator
from gateway.logbuffer import RequestLogBuffer
from gateway.proxy import Gateway
from ishchat.errors import ServiceUnavailableError
from ishchat.outage import DATABASE_ERRORS, Outage

pytestmark = pytest.mark.django_db


class Database:
    """The key lookup as the gateway runs it (principal_for_key on the test database), until it is cut."""

    def __init__(self) -> None:
        self.down = False
        self.hung = False
        self.lookups = 0

    def lookup(self, key: str) -> Any:
        self.lookups += 1
        if self.hung:  # answers after 1 s, too late
            time.sleep(1.0)
        if self.down or self.hung:
            raise OperationalError("connection to server at 127.0.0.1 failed: Connection refused")
        return principal_for_key(key)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup() -> tuple[Authenticator, Database, Clock, dict[str, str]]:
    database, clock = Database(), Clock()
    outage = Outage("database", errors=DATABASE_ERRORS, clock=clock)
    auth = Authenticator(lookup=database.lookup, outage=outage, clock=clock, lookup_timeout=0.3)
    _, plain = api_key_create(name="client")
    return auth, database, clock, {"Authorization": f"Bearer {plain}"}


def principal(auth: Authenticator, headers: dict[str, str]) -> Any:
    return async_to_sync(auth.principal)(headers)


def test_a_key_verified_within_the_stale_ttl_keeps_working_while_the_database_is_down(setup):
    auth, database, clock, headers = setup
    assert principal(auth, headers).name == "client"

    database.down = True
    clock.now += STALE_SECONDS - 1

    assert principal(auth, headers).name == "client"
    assert database.lookups == 2  # past CACHE_SECONDS it asked the database first


def test_a_key_verified_longer_ago_than_the_stale_ttl_is_unavailable_not_refused(setup):
    auth, database, clock, headers = setup
    principal(auth, headers)

    database.down = True
    clock.now += STALE_SECONDS + 1

    with pytest.raises(ServiceUnavailableError) as raised:
        principal(auth, headers)
    assert raised.value.code == "database_unavailable"


def test_an_unknown_key_is_unavailable_while_the_database_is_down(setup):
    auth, database, _, _ = setup
    database.down = True

    with pytest.raises(ServiceUnavailableError):
        principal(auth, {"X-API-Key": "never-seen-before"})


def test_a_hung_database_costs_one_lookup_timeout_then_stale_keys_answer_without_asking(setup):
    auth, database, clock, headers = setup
    principal(auth, headers)
    database.hung = True
    clock.now += CACHE_SECONDS + 1

    started = time.monotonic()
    # As under uvicorn: the lookup's thread is not this one, which would wait for it.
    assert asyncio.run(auth.principal(headers)).name == "client"
    assert time.monotonic() - started < 0.9  # the lookup's timeout (0.3 s), not the hang (1 s)
    assert asyncio.run(auth.principal(headers)).name == "client"
    assert database.lookups == 2  # during the outage the database is retried every RETRY_SECONDS only


def test_an_outage_logs_one_line_and_its_end_one_more(setup, caplog):
    auth, database, clock, headers = setup
    principal(auth, headers)
    database.down = True
    caplog.set_level(logging.INFO, logger="ishchat.outage")
    for _ in range(5):
        clock.now += CACHE_SECONDS + 6  # past the cache and past every retry pause
        principal(auth, headers)

    database.down = False
    clock.now += CACHE_SECONDS + 6
    principal(auth, headers)

    lines = [record.getMessage() for record in caplog.records if record.name == "ishchat.outage"]
    assert len(lines) == 2, lines
    assert lines[0].startswith("database unreachable (OperationalError") and lines[1] == "database reachable again"


def test_the_gateway_answers_503_in_openai_shape_for_a_key_it_cannot_check(setup):
    auth, database, _, _ = setup
    database.down = True
    status, body = chat(auth, "a-key-the-gateway-never-saw")

    assert status == 503
    assert body["error"]["code"] == "database_unavailable"
    assert body["error"]["type"] == "service_unavailable"


def chat(auth: Authenticator, key: str) -> tuple[int, dict[str, Any]]:
    headers = [(b"host", b"localhost"), (b"authorization", f"Bearer {key}".encode())]
    scope = {"type": "http", "path": "/v1/chat/completions", "method": "POST", "headers": headers, "scheme": "http"}
    messages = [{"type": "http.request", "body": b'{"model": "m", "messages": []}', "more_body": False}]
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    app = GatewayApp(gateway=Gateway(log_buffer=RequestLogBuffer(background=False), authenticator=auth))
    async_to_sync(app)(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body)


def test_only_errors_that_mean_unreachable_are_a_database_outage():
    import sqlite3

    import psycopg
    import psycopg.errors
    import psycopg_pool
    from django.db import InterfaceError, OperationalError

    from ishchat.outage import DATABASE_OUTAGE, database_unreachable

    def wrapped(cause: BaseException) -> OperationalError:
        error = OperationalError(str(cause))
        error.__cause__ = cause
        return error

    assert database_unreachable(wrapped(psycopg.OperationalError("connection failed: Connection refused")))
    assert database_unreachable(wrapped(psycopg_pool.PoolTimeout("couldn't get a connection after 5.00 sec")))
    assert database_unreachable(InterfaceError("connection already closed"))
    assert database_unreachable(wrapped(psycopg.errors.AdminShutdown("terminating connection")))
    assert not database_unreachable(wrapped(psycopg.errors.DeadlockDetected("deadlock detected")))
    assert not database_unreachable(wrapped(psycopg.errors.LockNotAvailable("could not obtain lock")))
    assert not database_unreachable(wrapped(psycopg.errors.QueryCanceled("canceling statement")))
    assert not database_unreachable(wrapped(sqlite3.OperationalError("database is locked")))
    assert not DATABASE_OUTAGE.is_outage(ValueError("not a database error at all"))
