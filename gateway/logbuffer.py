"""RequestLog rows written off the request path, in batches.

The request path only appends a dict to an in-memory queue. A daemon thread
writes the queue with bulk_create every `interval` seconds, or as soon as
`batch_size` rows are waiting, in batches of `batch_size`. At interpreter exit
(atexit: a clean stop of uvicorn or a gunicorn worker) the thread stops and
whatever is queued is written, so a clean stop loses nothing.

Memory is bounded: while the database is unreachable (OperationalError,
InterfaceError) rows stay queued, and beyond `capacity` the oldest are
dropped (reason buffer_full). A batch the database refuses for a vanished
instance (deleted meanwhile: foreign-key error) is written again without that
link. A batch it refuses for any other reason (a NUL character PostgreSQL
will not store, a violated constraint) holds at least one row it will never
accept: the batch is split in halves and each half written again, down to the
single refused rows, which are dropped (reason refused). With b bad rows in a
batch of n that costs O(b * log n) statements, and every good row is written.

Drops are counted by reason in `dropped_by_reason`, in the per-process
Prometheus counter instance_manager_requestlog_dropped_total{reason} and in the
writer's log line (at most one every DROP_LOG_SECONDS).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from django.db import (
    DatabaseError,
    IntegrityError,
    close_old_connections,
    connection,
    transaction,
)

from instances.models import AIInstance, RequestLog
from ishchat.outage import DATABASE_ERRORS, DATABASE_OUTAGE
from monitoring.metrics import REQUESTLOG_DROP_REASONS, REQUESTLOG_DROPPED

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
INTERVAL_SECONDS = 1.0
CAPACITY = 100_000
DROP_LOG_SECONDS = 10.0

Row = dict[str, Any]
"""RequestLog field values by field name (instance_id / original_instance_id are AIInstance pks)."""

BUFFER_FULL = "buffer_full"
REFUSED = "refused"


class RequestLogBuffer:
    def __init__(
        self,
        *,
        capacity: int = CAPACITY,
        batch_size: int = BATCH_SIZE,
        interval: float = INTERVAL_SECONDS,
        background: bool = True,
        write: Callable[[list[Row]], None] | None = None,
    ) -> None:
        """`background`: start the writer thread with the first row (off: only flush() writes).
        `write`: how a batch reaches the database (write_rows)."""
        self.capacity = capacity
        self.batch_size = batch_size
        self.interval = interval
        self.background = background
        self._write = write or write_rows
        self.written = 0
        self.dropped_by_reason = dict.fromkeys(REQUESTLOG_DROP_REASONS, 0)
        self.failed_flushes = 0
        self._rows: deque[Row] = deque()
        self._lock = threading.Lock()  # guards _rows and the counters
        self._flush_lock = threading.Lock()  # one writer at a time (the thread, close(), a test)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._dropped_logged = 0
        self._drop_logged_at = 0.0

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def dropped(self) -> int:
        """Rows dropped so far, whatever the reason."""
        return sum(self.dropped_by_reason.values())

    def add(self, row: Row) -> None:
        """Queue one row; never touches the database."""
        with self._lock:
            if len(self._rows) >= self.capacity:
                self._rows.popleft()
                self._count_drop(BUFFER_FULL)
            self._rows.append(row)
            full = len(self._rows) >= self.batch_size
        if self.background and self._thread is None:
            self._start()
        if full:
            self._wake.set()

    def flush(self) -> int:
        """Write every queued row now, in this thread; returns the rows written.

        When the database is unreachable the unwritten rows go back to the
        front of the queue (oldest first, within capacity) for the next flush.
        """
        written = 0
        with self._flush_lock:
            while True:
                with self._lock:
                    count = min(self.batch_size, len(self._rows))
                    batch = [self._rows.popleft() for _ in range(count)]
                if not batch:
                    break
                try:
                    written += self._write_isolating(batch)
                except DATABASE_ERRORS as exc:  # one log line per outage (DATABASE_OUTAGE), not one per second
                    self.failed_flushes += 1  # the batch waits for the next flush either way
                    if DATABASE_OUTAGE.is_outage(exc):
                        DATABASE_OUTAGE.failed(exc)
                    break
                DATABASE_OUTAGE.recovered()
        self._log_drops()
        return written

    def _write_isolating(self, batch: list[Row]) -> int:
        """Write the batch; a part the database refuses is halved and retried down to single rows.

        1. Write the next part (the whole batch first).
        2. Refused (a DatabaseError that is not a connection error): a part of one row is
           dropped as refused; a bigger part is split in two halves, written in turn.
        3. Connection lost: every part not written yet goes back to the queue, in order,
           and the error propagates (flush stops until the next try).
        Returns the rows written.
        """
        written = 0
        parts = [batch]  # a stack: the last part is the oldest one not written yet
        while parts:
            part = parts.pop()
            try:
                self._write(part)
            except DATABASE_ERRORS:
                self._requeue([row for unwritten in (part, *reversed(parts)) for row in unwritten])
                raise
            except DatabaseError as exc:
                if len(part) == 1:
                    self._refused(part[0], exc)
                else:
                    middle = len(part) // 2
                    parts += [part[middle:], part[:middle]]
                continue
            written += len(part)
            with self._lock:
                self.written += len(part)
        return written

    def _refused(self, row: Row, exc: DatabaseError) -> None:
        with self._lock:
            self._count_drop(REFUSED)
        logger.error(
            "RequestLog row %r refused by the database; dropped (%s: %s)",
            row.get("request_id"),
            type(exc).__name__,
            str(exc).splitlines()[0] if str(exc) else "",
        )

    def _count_drop(self, reason: str) -> None:
        """Count one dropped row (the caller holds _lock)."""
        self.dropped_by_reason[reason] += 1
        REQUESTLOG_DROPPED.labels(reason=reason).inc()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the writer thread and write what is left (atexit)."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        try:
            if not connection.in_atomic_block:  # never close a caller's (a test's) transaction
                close_old_connections()
            self.flush()
        except Exception:  # at exit there is nobody left to raise to
            logger.exception("RequestLog final flush failed; %d rows lost", len(self))

    def _requeue(self, batch: list[Row]) -> None:
        with self._lock:
            self._rows.extendleft(reversed(batch))
            while len(self._rows) > self.capacity:
                self._rows.popleft()
                self._count_drop(BUFFER_FULL)

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="requestlog-writer", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return  # close() writes the rest
            try:
                close_old_connections()  # as Django does per request: replace a broken or expired connection
                self.flush()
            except Exception:
                logger.exception("RequestLog writer error")
                time.sleep(self.interval)
            finally:
                connection.close()  # back to the pool between flushes (PostgreSQL), not held for the process

    def _log_drops(self) -> None:
        now = time.monotonic()
        dropped = self.dropped
        if dropped != self._dropped_logged and now - self._drop_logged_at >= DROP_LOG_SECONDS:
            by_reason = dict(self.dropped_by_reason)
            logger.error(
                "RequestLog rows dropped: %d so far (%d since the last report); buffer_full=%d refused=%d",
                dropped,
                dropped - self._dropped_logged,
                by_reason[BUFFER_FULL],
                by_reason[REFUSED],
                extra={"dropped": by_reason},
            )
            self._dropped_logged = dropped
            self._drop_logged_at = now


def write_rows(batch: list[Row]) -> None:
    """One bulk INSERT of the batch (in one transaction)."""
    try:
        with transaction.atomic():
            RequestLog.objects.bulk_create([RequestLog(**row) for row in batch])
    except IntegrityError:
        # Most likely an instance deleted since the request: keep the row, drop the link.
        known = set(AIInstance.objects.filter(pk__in=_instance_pks(batch)).values_list("pk", flat=True))
        for row in batch:
            for field in ("instance_id", "original_instance_id"):
                if row.get(field) is not None and row[field] not in known:
                    row[field] = None
        with transaction.atomic():
            RequestLog.objects.bulk_create([RequestLog(**row) for row in batch])


def _instance_pks(batch: Iterable[Row]) -> set[int]:
    return {row[f] for row in batch for f in ("instance_id", "original_instance_id") if row.get(f) is not None}


_default: RequestLogBuffer | None = None
_default_lock = threading.Lock()


def request_log_buffer() -> RequestLogBuffer:
    """The process-wide buffer (its writer thread starts with the first row)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = RequestLogBuffer()
    return _default
