"""RequestLog rows leave the request path through an in-memory buffer and reach the
database in batches: from a writer thread, on every interval or full batch, and at exit."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.db import DatabaseError, OperationalError, ProgrammingError, connection
from django.utils import timezone
from prometheus_client import REGISTRY

from gateway.logbuffer import RequestLogBuffer, Row, write_rows
from instances.models import RequestLog

REPO_ROOT = Path(__file__).resolve().parents[2]


def row(n: int, **fields: Any) -> Row:
    return {"request_id": f"r{n}", "status": "success", "status_code": 200, "created_at": timezone.now(), **fields}


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class FlakyWriter:
    """Writes through write_rows after `failures` batches raised `error`, recording every batch size."""

    def __init__(self, failures: int = 0, error: type[Exception] = OperationalError) -> None:
        self.failures = failures
        self.error = error
        self.batches: list[int] = []

    def __call__(self, batch: list[Row]) -> None:
        self.batches.append(len(batch))
        if self.failures:
            self.failures -= 1
            raise self.error("the database is away")
        write_rows(batch)


@pytest.mark.django_db
def test_rows_are_written_in_batches():
    writer = FlakyWriter()
    buffer = RequestLogBuffer(batch_size=500, background=False, write=writer)
    for n in range(1200):
        buffer.add(row(n))

    written = buffer.flush()

    assert written == buffer.written == 1200
    assert writer.batches == [500, 500, 200]
    assert RequestLog.objects.count() == 1200
    assert len(buffer) == 0


@pytest.mark.django_db
def test_adding_a_row_never_touches_the_database(django_assert_num_queries):
    buffer = RequestLogBuffer(background=False)

    with django_assert_num_queries(0):
        for n in range(100):
            buffer.add(row(n))

    assert len(buffer) == 100


@pytest.mark.django_db
def test_rows_wait_while_the_database_is_away_and_are_written_when_it_is_back():
    writer = FlakyWriter(failures=1)
    buffer = RequestLogBuffer(batch_size=2, background=False, write=writer)
    for n in range(5):
        buffer.add(row(n))

    assert buffer.flush() == 0
    assert (len(buffer), buffer.failed_flushes, buffer.dropped) == (5, 1, 0)
    assert buffer.flush() == 5
    assert list(RequestLog.objects.order_by("pk").values_list("request_id", flat=True)) == [f"r{n}" for n in range(5)]


@pytest.mark.django_db
def test_a_full_buffer_drops_the_oldest_rows_and_counts_them():
    writer = FlakyWriter(failures=1)
    buffer = RequestLogBuffer(capacity=3, batch_size=10, background=False, write=writer)
    for n in range(5):
        buffer.add(row(n))
    assert buffer.dropped == 2

    buffer.flush()  # fails: the rows go back, still bounded
    buffer.add(row(5))
    buffer.flush()

    assert buffer.dropped == 3
    assert set(RequestLog.objects.values_list("request_id", flat=True)) == {"r3", "r4", "r5"}


@pytest.mark.django_db
def test_a_batch_the_database_refuses_for_its_content_is_dropped_not_retried_forever():
    buffer = RequestLogBuffer(background=False, write=FlakyWriter(failures=1, error=ProgrammingError))
    buffer.add(row(0))

    buffer.flush()

    assert (len(buffer), buffer.dropped) == (0, 1)


def dropped_metric(reason: str) -> float:
    """instance_manager_requestlog_dropped_total{reason} as this process's /metrics reports it."""
    value = REGISTRY.get_sample_value("instance_manager_requestlog_dropped_total", {"reason": reason})
    assert value is not None
    return value


def bad_row(n: int) -> Row:
    """A row the database never accepts: PostgreSQL refuses NUL in text, SQLite a negative status code
    (the CHECK of a positive small integer)."""
    if connection.vendor == "postgresql":
        return row(n, session_id="user\x00nul", error="a NUL \x00 in the error")
    return row(n, status_code=-1)


class CountingWriter:
    """write_rows, counting the statements (batches) tried."""

    def __init__(self) -> None:
        self.tries = 0

    def __call__(self, batch: list[Row]) -> None:
        self.tries += 1
        write_rows(batch)


@pytest.mark.django_db
def test_one_refused_row_is_dropped_and_counted_and_the_rest_of_its_batch_is_written(caplog):
    writer = CountingWriter()
    buffer = RequestLogBuffer(batch_size=500, background=False, write=writer)
    before = dropped_metric("refused"), dropped_metric("buffer_full")
    for n in range(51):
        buffer.add(bad_row(n) if n == 17 else row(n))

    with caplog.at_level("ERROR", logger="gateway.logbuffer"):
        written = buffer.flush()

    assert written == buffer.written == 50
    assert RequestLog.objects.count() == 50
    assert not RequestLog.objects.filter(request_id="r17").exists()
    assert buffer.dropped_by_reason == {"buffer_full": 0, "refused": 1}
    assert (dropped_metric("refused"), dropped_metric("buffer_full")) == (before[0] + 1, before[1])
    assert "refused=1" in caplog.text and "'r17'" in caplog.text
    # Bisection, not row by row: one whole try, then about two tries per halving (log2 51 ~ 6).
    assert writer.tries <= 1 + 2 * 6


@pytest.mark.django_db
def test_several_refused_rows_are_each_isolated():
    buffer = RequestLogBuffer(batch_size=64, background=False)
    bad = {0, 31, 32, 63, 100}
    for n in range(128):
        buffer.add(bad_row(n) if n in bad else row(n))

    assert buffer.flush() == 128 - len(bad)
    assert buffer.dropped_by_reason["refused"] == len(bad)
    assert set(RequestLog.objects.values_list("request_id", flat=True)) == {f"r{n}" for n in range(128)} - {
        f"r{n}" for n in bad
    }


class RefusesThenLosesTheConnection:
    """Refuses the whole batch (content), then loses the connection on the next try, then writes."""

    def __init__(self) -> None:
        self.tries = 0

    def __call__(self, batch: list[Row]) -> None:
        self.tries += 1
        if self.tries == 1:
            raise DatabaseError("refused")
        if self.tries == 3:
            raise OperationalError("the database is away")
        if any(r["request_id"] == "r0" for r in batch):
            raise DatabaseError("refused")
        write_rows(batch)


@pytest.mark.django_db
def test_a_connection_lost_while_isolating_a_row_keeps_every_unwritten_row_in_order():
    buffer = RequestLogBuffer(batch_size=8, background=False, write=RefusesThenLosesTheConnection())
    for n in range(8):
        buffer.add(row(n))

    buffer.flush()  # whole batch refused, then its first half; the connection is lost on the first quarter
    assert buffer.failed_flushes == 1
    assert [r["request_id"] for r in buffer._rows] == [f"r{n}" for n in range(8)]  # nothing lost, nothing dropped

    buffer.flush()
    assert buffer.dropped_by_reason["refused"] == 1
    assert sorted(RequestLog.objects.values_list("request_id", flat=True)) == [f"r{n}" for n in range(1, 8)]


@pytest.mark.django_db
def test_rows_dropped_from_a_full_buffer_are_counted_as_buffer_full():
    before = dropped_metric("buffer_full")
    buffer = RequestLogBuffer(capacity=2, background=False)
    for n in range(5):
        buffer.add(row(n))

    assert buffer.dropped_by_reason == {"buffer_full": 3, "refused": 0}
    assert dropped_metric("buffer_full") == before + 3


@pytest.mark.django_db
def test_the_drop_counter_is_on_the_metrics_page(client):
    body = client.get("/metrics").content.decode()

    assert 'instance_manager_requestlog_dropped_total{reason="refused"}' in body
    assert 'instance_manager_requestlog_dropped_total{reason="buffer_full"}' in body


@pytest.mark.django_db(transaction=True)
def test_a_row_of_a_deleted_instance_is_kept_without_the_link():
    buffer = RequestLogBuffer(background=False)
    buffer.add(row(0, instance_id=987654, original_instance_id=987655))

    assert buffer.flush() == 1

    kept = RequestLog.objects.get()
    assert (kept.instance_id, kept.original_instance_id) == (None, None)


@pytest.mark.django_db(transaction=True)
def test_the_writer_thread_writes_every_interval_and_at_close():
    buffer = RequestLogBuffer(interval=0.1)
    for n in range(3):
        buffer.add(row(n))

    assert wait_for(lambda: RequestLog.objects.count() == 3)
    buffer.add(row(3))
    buffer.close()

    assert RequestLog.objects.count() == 4


@pytest.mark.django_db(transaction=True)
def test_a_full_batch_wakes_the_writer_before_its_interval():
    buffer = RequestLogBuffer(interval=60.0, batch_size=10)
    for n in range(10):
        buffer.add(row(n))

    assert wait_for(lambda: RequestLog.objects.count() == 10, timeout=3.0)
    buffer.close()


def test_a_clean_exit_writes_what_is_still_queued(tmp_path):
    """A real interpreter exit (what a stopping uvicorn or gunicorn worker does): atexit writes the rows."""
    database = tmp_path / "exit.sqlite3"
    script = textwrap.dedent(
        """
        import django
        django.setup()
        from django.core.management import call_command
        from django.utils import timezone
        from gateway.logbuffer import request_log_buffer

        call_command("migrate", "instances", verbosity=0)
        buffer = request_log_buffer()  # the process's own: writer thread, flushed every second, atexit hook
        for n in range(1500):
            buffer.add({"request_id": f"r{n}", "status": "success", "created_at": timezone.now()})
        print("queued", len(buffer))
        """
    )
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="ishchat.settings",
        DATABASE_URL=f"sqlite:///{database}",
        INSTANCE_MANAGER_VAR_DIR=str(tmp_path / "var"),
        INSTANCE_MANAGER_LOG_DIR=str(tmp_path / "logs"),
        INSTANCE_MANAGER_DOTENV="false",
    )

    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    assert "queued" in result.stdout
    with sqlite3.connect(database) as conn:
        (count,) = conn.execute("SELECT count(*) FROM instances_requestlog").fetchone()
    assert count == 1500
