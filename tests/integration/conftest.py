"""Fixtures for tests that talk to real processes: a Celery worker, a simulator started by manage.py.

Another process must see the test database. PostgreSQL's test database
(test_<name>) is a real one; SQLite's is in memory, which no other process can
open, so for this package the suite's in-memory database is copied to a file
and swapped in, then swapped back when the package is done.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import pytest
from django.conf import settings
from django.db import connection

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 30.0


@pytest.fixture(scope="package")
def django_db_setup(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """The suite's test database, in a file when it is SQLite in memory (restored afterwards)."""
    if connection.vendor != "sqlite" or not connection.is_in_memory_db():  # type: ignore[attr-defined]
        yield
        return
    path = tmp_path_factory.mktemp("integration-db") / "db.sqlite3"
    with django_db_blocker.unblock():
        connection.ensure_connection()
        memory = connection.connection  # held open: closing the last connection destroys an in-memory database
        with sqlite3.connect(path) as target:
            memory.backup(target)
        target.close()
        memory_name = connection.settings_dict["NAME"]
        connection.connection = None  # detach without closing; the next query connects to the file
        connection.settings_dict["NAME"] = str(path)
    try:
        yield
    finally:
        with django_db_blocker.unblock():
            connection.close()
            connection.settings_dict["NAME"] = memory_name
            connection.connection = memory


def database_url() -> str:
    """DATABASE_URL of the database this test process uses, for a child process."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    if connection.vendor != "postgresql":
        raise NotImplementedError(connection.vendor)
    auth = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    host = db.get("HOST") or "localhost"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgresql://{auth}{'@' if auth else ''}{host}{port}/{quote(db['NAME'], safe='')}"


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment (pytest-env's secrets, REDIS_URL...) pointed at the test database."""
    env = dict(os.environ)
    env.update(DATABASE_URL=database_url(), INSTANCE_MANAGER_DOTENV="false", PYTHONUNBUFFERED="1", **extra)
    return env


def healthy_instances(sim_server: Any, model: str, names: Iterable[str], **fields: Any) -> list[str]:
    """Register one instance of `model` per name on the simulator (path = name), marked healthy: their ids."""
    from instances.models import AIInstance
    from instances.services import instance_register

    ids = []
    for name in names:
        instance = instance_register(
            provider_type="openai",
            model_name=model,
            instance_name=name,
            endpoint_url=sim_server.base_url(name),
            **fields,
        )
        AIInstance.objects.filter(pk=instance.pk).update(status="healthy", health_score=1.0)
        ids.append(str(instance.instance_id))
    return ids


def web_command(port: int) -> list[str]:
    """A web process as the Procfile runs it (uvicorn with the bounded HTTP protocol), on loopback."""
    return [
        *(sys.executable, "-m", "uvicorn", "ishchat.asgi:application"),
        *("--http", "ishchat.server:BoundedHttpToolsProtocol"),
        *("--host", "127.0.0.1", "--port", str(port), "--lifespan", "off", "--log-level", "warning"),
    ]


def health_ok(base_url: str) -> bool:
    """Whether the web process at `base_url` answers GET /health with 200 (False while it is not up)."""
    try:
        return httpx.get(f"{base_url}/health", timeout=5, trust_env=False).status_code == 200
    except httpx.TransportError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], Any], *, timeout: float, what: str, process: Process | None = None) -> Any:
    """Poll until condition() is truthy; fail with the child's log when it does not come, or the child dies."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if process is not None and process.popen.poll() is not None:
            pytest.fail(f"{process.name} exited ({process.popen.returncode}) before {what}:\n{process.log()}")
        if time.monotonic() > deadline:
            log = f":\n{process.log()}" if process is not None else ""
            pytest.fail(f"no {what} within {timeout:g} s{log}")
        time.sleep(0.1)


@dataclass
class Process:
    """A child started in its own process group, so stopping it also stops whatever it forked."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    stop_signal: signal.Signals = signal.SIGTERM

    @classmethod
    def start(
        cls,
        name: str,
        command: list[str],
        env: dict[str, str],
        log_path: Path,
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> Process:
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return cls(name, popen, log_path, stop_signal)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, self.stop_signal)
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=15)
            except ProcessLookupError:
                pass
        with contextlib.suppress(ProcessLookupError):  # children left behind in the group (a prefork pool's)
            os.killpg(self.popen.pid, signal.SIGKILL)


@dataclass
class Worker:
    process: Process
    queue: str
    broker_url: str

    def enqueue(self, task: Any) -> None:
        """task.apply_async onto this worker's queue, for real: eager execution is off while sending."""
        app = task.app
        eager = app.conf.task_always_eager
        app.conf.task_always_eager = False
        try:
            with app.connection_for_write(self.broker_url) as conn:
                task.apply_async(queue=self.queue, connection=conn)
        finally:
            app.conf.task_always_eager = eager


def _private_broker_url() -> str:
    """The configured broker; on Redis another database than the cache's, whose FLUSHDB (cache.clear() in
    every test's setup, maybe in a parallel pytest worker) would otherwise wipe the queued task."""
    if not settings.REDIS_URL:
        return settings.CELERY_BROKER_URL
    parts = urlsplit(settings.REDIS_URL)
    db = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{db - 1 if db else 1}"))


@contextlib.contextmanager
def running_worker(tmp_path: Path, **env: str) -> Iterator[Worker]:
    """`celery -A ishchat worker` against this test's database and the configured broker, on a queue of its own
    (so it never takes a developer's tasks, nor a developer's worker its), with `env` over child_env's.
    Stopped, with its process group, at the end of the block."""
    queue = f"integration-{uuid.uuid4().hex[:12]}"
    broker_url = _private_broker_url()
    extra = {"CELERY_TASK_ALWAYS_EAGER": "false", **env}
    if settings.REDIS_URL:
        extra["CELERY_BROKER_URL"] = broker_url
    command = [
        sys.executable, "-m", "celery", "-A", "ishchat", "worker", "--loglevel=INFO", "--pool=solo",
        "--queues", queue, "--hostname", f"{queue}@%h", "--without-mingle", "--without-gossip", "--without-heartbeat",
    ]  # fmt: skip
    # SIGQUIT: a cold shutdown; the warm one waits seconds for the broker's next poll, and the test is over.
    process = Process.start("celery worker", command, child_env(**extra), tmp_path / "worker.log", signal.SIGQUIT)
    try:
        wait_for(lambda: " ready." in process.log(), timeout=STARTUP_SECONDS, what="worker ready", process=process)
        yield Worker(process, queue, broker_url)
    finally:
        process.stop()
        if not settings.REDIS_URL:  # a message the worker never took stays behind in the shared folder
            folder = Path(str(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"]))
            for leftover in folder.glob(f"*.{queue}.msg"):
                leftover.unlink(missing_ok=True)
        else:
            import redis

            with redis.Redis.from_url(broker_url) as client:
                client.delete(queue, f"_kombu.binding.{queue}")


@pytest.fixture
def celery_worker(transactional_db: None, tmp_path: Path) -> Iterator[Worker]:
    """A worker (running_worker) for the test, stopped before the database is flushed."""
    with running_worker(tmp_path) as worker:
        yield worker
