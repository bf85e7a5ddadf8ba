"""The per-process cache of the merged configuration and its cross-process invalidation.

Reads are on hot paths (every routed request), so the merged result is kept in
the process. A write bumps a version number in Django's cache (Redis when
configured, so every process notices within `check_interval`); the TTL bounds
staleness where the cache is per process (the embedded locmem default).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured

from configuration.layers import Resolved
from ishchat.outage import CACHE_OUTAGE

logger = logging.getLogger(__name__)

VERSION_KEY = "configuration:version"


def shared_version() -> int | None:
    """The shared version; None while the cache is unreachable (reads go on, the TTL bounds staleness)."""
    return CACHE_OUTAGE.call(lambda: cache.get(VERSION_KEY), fallback=lambda: None)


def _bump() -> None:
    try:
        cache.incr(VERSION_KEY)
    except ValueError:  # missing key: start it, unless another process just did
        if not cache.add(VERSION_KEY, 1, timeout=None):
            cache.incr(VERSION_KEY)


def bump_shared_version() -> None:
    """Publish a change; while the cache is unreachable other processes catch up by TTL."""
    CACHE_OUTAGE.call(_bump, fallback=lambda: None)


@dataclass
class _Snapshot:
    resolved: Resolved
    version: int | None
    loaded_at: float
    checked_at: float


class ConfigCache:
    """Keeps one Resolved; reloads after `ttl` seconds or when the shared version moves.

    The shared version is read at most every `check_interval` seconds. If a reload
    fails on a bad file or environment, the last good configuration keeps serving
    (the system check and the log say why); with none yet, the error propagates.
    """

    def __init__(
        self, *, ttl: float = 5.0, check_interval: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.check_interval = check_interval
        self.clock = clock
        self._snapshot: _Snapshot | None = None
        self._lock = threading.Lock()

    def get(self, load: Callable[[], Resolved]) -> Resolved:
        snapshot, now = self._snapshot, self.clock()
        if snapshot is not None and now - snapshot.loaded_at < self.ttl:
            if now - snapshot.checked_at < self.check_interval:
                return snapshot.resolved
            if shared_version() == snapshot.version:
                snapshot.checked_at = now
                return snapshot.resolved
        with self._lock:
            current = self._snapshot
            if current is not None and current is not snapshot and self.clock() - current.loaded_at < self.ttl:
                return current.resolved  # another thread reloaded while this one waited
            # Read the version before the data: a write landing in between moves it again.
            version = shared_version()
            try:
                resolved = load()
            except ImproperlyConfigured:
                if snapshot is None:
                    raise
                logger.exception("Configuration reload failed; keeping the last good configuration")
                resolved = snapshot.resolved
            self._snapshot = _Snapshot(resolved, version, now, now)
            return resolved

    def clear(self) -> None:
        self._snapshot = None


CONFIG_CACHE = ConfigCache()
