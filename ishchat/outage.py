"""The outage policy for a dependency that the process can do without for a while
(Redis): degrade, log one line when it becomes unreachable and one when it answers
again, and try it again only every `retry_seconds` meanwhile.

    value = CACHE_OUTAGE.call(lambda: cache.get(key), fallback=lambda: None)

runs the call unless an outage is in progress and the last failure is under
`retry_seconds` old; a failure with one of the outage's `errors` (or a skipped
call) returns `fallback()` instead, so a hung Redis costs one socket timeout per
`retry_seconds` per process, not one per request. The first failure logs
"<name> unreachable (<error>)" without a traceback; the first success after it
logs "<name> reachable again". Per process and thread-safe; the clock is injectable.

`CACHE_OUTAGE` is Django's default cache (throttles, version keys of the registry
and configuration snapshots); `DATABASE_OUTAGE` the database, for the code that can
serve from what it last read (the gateway's key check and registry snapshot); other
dependencies make their own `Outage`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import redis
from django.db import InterfaceError, OperationalError

logger = logging.getLogger("ishchat.outage")

T = TypeVar("T")

# What Django's Redis cache raises when Redis is cut, hung (socket timeout) or refusing.
CACHE_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, OSError)
RETRY_SECONDS = 5.0


class Outage:
    """Whether one dependency is down for this process, logged once per change."""

    def __init__(
        self,
        name: str,
        *,
        errors: tuple[type[Exception], ...],
        matches: Callable[[BaseException], bool] | None = None,
        retry_seconds: float = RETRY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`errors` the exception types that may mean an outage; `matches` tells, of those, which
        do (default: all of them)."""
        self.name = name
        self.errors = errors
        self.matches = matches
        self.retry_seconds = retry_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self.down = False
        self._failed_at = 0.0

    @property
    def skipping(self) -> bool:
        """Down, and the last failure is under `retry_seconds` old: degrade without calling."""
        return self.down and self._clock() - self._failed_at < self.retry_seconds

    def is_outage(self, exc: BaseException) -> bool:
        """Whether `exc` says the dependency is unreachable (not one call's own failure)."""
        return isinstance(exc, self.errors) and (self.matches is None or self.matches(exc))

    def call(self, call: Callable[[], T], *, fallback: Callable[[], T]) -> T:
        """`call()`; `fallback()` while skipping or when the call fails with an outage error
        (`is_outage`); any other error propagates."""
        if self.skipping:
            return fallback()
        try:
            result = call()
        except self.errors as exc:
            if not self.is_outage(exc):
                raise
            self.failed(exc)
            return fallback()
        self.recovered()
        return result

    def failed(self, exc: BaseException) -> None:
        """A call failed: log "<name> unreachable" if it was up (one line, no traceback)."""
        with self._lock:
            self._failed_at = self._clock()
            if self.down:
                return
            self.down = True
        logger.error("%s unreachable (%s: %s); degrading until it answers", self.name, type(exc).__name__, exc)

    def recovered(self) -> None:
        """A call succeeded: log "<name> reachable again" if it was down."""
        if not self.down:
            return
        with self._lock:
            if not self.down:
                return
            self.down = False
        logger.warning("%s reachable again", self.name)


CACHE_OUTAGE = Outage("cache (Redis)", errors=CACHE_ERRORS)

# What Django raises when the database is cut, refusing, or the pool waited its timeout
# for a connection (psycopg_pool.PoolTimeout is an OperationalError, wrapped by Django).
DATABASE_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError)
# The database: the gateway's key check (stale keys) and registry snapshot (the last one).
# SQLSTATEs that mean the server cannot serve at all: class 08 (connection exception) and the
# shutdown ones. A deadlock (40P01), a serialization failure (40001), a lock timeout (55P03) or a
# cancelled statement (57014) is one query's failure, not an outage.
_UNREACHABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})


def database_unreachable(exc: BaseException) -> bool:
    """Whether a database error says the database cannot be reached (refused, cut, hung past the
    pool's wait, shutting down), as opposed to one statement's failure (a deadlock, a lock
    timeout, a locked SQLite file), which must not make every process degrade."""
    if isinstance(exc, InterfaceError):
        return True
    if not isinstance(exc, OperationalError):
        return False
    cause = exc.__cause__ or exc
    sqlstate = getattr(cause, "sqlstate", None)
    if sqlstate is not None:
        return sqlstate.startswith("08") or sqlstate in _UNREACHABLE_SQLSTATES
    # psycopg's connection failures and the pool's timeout carry no SQLSTATE; nor does sqlite3.
    message = str(cause).lower()
    return not ("locked" in message or "busy" in message)


DATABASE_OUTAGE = Outage("database", errors=DATABASE_ERRORS, matches=database_unreachable)
