"""Who is calling the gateway: the project's API keys, with the verdicts cached in process.

A ProjectAPIKey lookup is a database query plus a hash; on every proxied
request that would cost more than the rest of the gateway together. Valid keys
are therefore remembered for CACHE_SECONDS, keyed by the SHA-256 of the key
(the key itself is never kept). The cost: a revoked or expired key keeps
working in a process for at most that long. Unknown keys are not cached, so a
key created a moment ago works at once. The lookup runs off the event loop.

When the database cannot answer (an OperationalError or InterfaceError, the
pool's timeout for a connection, or no answer within `lookup_timeout`: a hung
server) a key this process verified within STALE_SECONDS (10 minutes) keeps
working, so a PostgreSQL outage or restart does not stop traffic; any other key
gets a 503 (`database_unavailable`), not a 401, since it may well be valid. The
outage is logged once (ishchat.outage.DATABASE_OUTAGE), and while it lasts the
database is tried again only every RETRY_SECONDS, stale keys answering meanwhile.
So a key revoked during an outage works until the database is back, at most.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, connection

from accounts.authentication import APIPrincipal, key_from_headers, principal_for_key
from ishchat.errors import ServiceUnavailableError
from ishchat.outage import DATABASE_ERRORS, DATABASE_OUTAGE, Outage

CACHE_SECONDS = 30.0
STALE_SECONDS = 600.0
MAX_CACHED_KEYS = 10_000


@dataclass(frozen=True, slots=True)
class _Verified:
    principal: APIPrincipal
    fresh_until: float  # served without a lookup until then
    stale_until: float  # served while the database cannot answer, until then


class Authenticator:
    def __init__(
        self,
        *,
        ttl: float = CACHE_SECONDS,
        stale_ttl: float = STALE_SECONDS,
        max_keys: int = MAX_CACHED_KEYS,
        lookup_timeout: float | None = None,
        lookup: Callable[[str], APIPrincipal | None] | None = None,
        outage: Outage = DATABASE_OUTAGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`lookup_timeout`: beyond the pool's wait for a connection, by default (a hung database).
        `lookup`: the key's principal from the database (principal_for_key)."""
        self.ttl = ttl
        self.stale_ttl = stale_ttl
        self.max_keys = max_keys
        self.lookup_timeout = settings.DB_POOL_TIMEOUT + 1.0 if lookup_timeout is None else lookup_timeout
        self.lookup = lookup or _lookup
        self.outage = outage
        self.clock = clock
        self._valid: dict[bytes, _Verified] = {}

    async def principal(self, headers: Mapping[str, str]) -> APIPrincipal | None:
        """The caller for `Authorization: Bearer <key>` or `X-API-Key: <key>`; None when missing or invalid.

        Raises ServiceUnavailableError when the database cannot tell and the key was not verified
        within `stale_ttl`."""
        key = key_from_headers(headers)
        if not key:
            return None
        digest = hashlib.sha256(key.encode()).digest()
        cached = self._valid.get(digest)
        now = self.clock()
        if cached is not None and cached.fresh_until > now:
            return cached.principal
        if self.outage.skipping:
            return self._stale(cached, now)
        try:
            lookup = sync_to_async(self.lookup, thread_sensitive=True)
            principal = await asyncio.wait_for(lookup(key), self.lookup_timeout)
        except DATABASE_ERRORS as exc:
            if not self.outage.is_outage(exc):  # one statement's failure (a deadlock): not an outage
                raise
            self.outage.failed(exc)
            return self._stale(cached, now)
        except TimeoutError:
            self.outage.failed(TimeoutError(f"no answer to the key lookup within {self.lookup_timeout:g} s"))
            return self._stale(cached, now)
        self.outage.recovered()
        if principal is None:
            self._valid.pop(digest, None)
            return None
        if len(self._valid) >= self.max_keys:
            self._valid = {d: entry for d, entry in self._valid.items() if entry.stale_until > now}
            if len(self._valid) >= self.max_keys:
                self._valid.clear()
        self._valid[digest] = _Verified(principal, now + self.ttl, now + self.stale_ttl)
        return principal

    def _stale(self, cached: _Verified | None, now: float) -> APIPrincipal:
        if cached is not None and cached.stale_until > now:
            return cached.principal
        raise ServiceUnavailableError(
            "The API key cannot be checked now: the database is unreachable. Retry shortly.",
            code="database_unavailable",
        )

    def clear(self) -> None:
        self._valid.clear()


def _lookup(key: str) -> APIPrincipal | None:
    fresh_connection()
    return principal_for_key(key)


def fresh_connection() -> None:
    """What Django does at the start of each request (drop a broken or expired connection), for
    code that reaches the database outside Django's request cycle. Not inside a transaction: the
    test suite wraps each test in one, and this must not close it."""
    if not connection.in_atomic_block:
        close_old_connections()
