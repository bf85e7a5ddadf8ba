"""Who is calling the gateway: the project's API keys, with the verdicts cached in process.

A ProjectAPIKey lookup is a database query plus a hash; on every proxied
request that would cost more than the rest of the gateway together. Valid keys
are therefore remembered for CACHE_SECONDS, keyed by the SHA-256 of the key
(the key itself is never kept). The cost: a revoked or expired key keeps
working in a process for at most that long. Unknown keys are not cached, so a
key created a moment ago works at once. The lookup runs off the event loop.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connection

from accounts.authentication import APIPrincipal, key_from_headers, principal_for_key

CACHE_SECONDS = 30.0
MAX_CACHED_KEYS = 10_000


class Authenticator:
    def __init__(
        self,
        *,
        ttl: float = CACHE_SECONDS,
        max_keys: int = MAX_CACHED_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_keys = max_keys
        self.clock = clock
        self._valid: dict[bytes, tuple[APIPrincipal, float]] = {}

    async def principal(self, headers: Mapping[str, str]) -> APIPrincipal | None:
        """The caller for `Authorization: Bearer <key>` or `X-API-Key: <key>`; None when missing or invalid."""
        key = key_from_headers(headers)
        if not key:
            return None
        digest = hashlib.sha256(key.encode()).digest()
        cached = self._valid.get(digest)
        now = self.clock()
        if cached is not None and cached[1] > now:
            return cached[0]
        principal = await sync_to_async(_lookup, thread_sensitive=True)(key)
        if principal is None:
            self._valid.pop(digest, None)
            return None
        if len(self._valid) >= self.max_keys:
            self._valid = {d: entry for d, entry in self._valid.items() if entry[1] > now}
            if len(self._valid) >= self.max_keys:
                self._valid.clear()
        self._valid[digest] = (principal, now + self.ttl)
        return principal

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
