"""The outage log: one line when a dependency becomes unreachable, one when it answers again.

Code that degrades through an outage (fail-open throttles, the balancer's
process-local state, a snapshot rebuilt from the database) reports each failed
call and each success to the dependency's `Outage`; the log then says
"<name> unreachable" once per outage and "<name> reachable again" once on
recovery, instead of a traceback per call. Per process and thread-safe:

    CACHE_OUTAGE = Outage("cache (Redis)")
    try:
        value = cache.get(key)
    except CACHE_ERRORS as exc:
        CACHE_OUTAGE.failed(exc)   # logs the first time only, without a traceback
        value = None               # degrade
    else:
        CACHE_OUTAGE.recovered()   # logs only if it was down; cheap otherwise

`CACHE_OUTAGE` and `CACHE_ERRORS` cover Django's default cache; other
dependencies make their own `Outage`.
"""

from __future__ import annotations

import logging
import threading

import redis

logger = logging.getLogger("ishchat.outage")

# What Django's Redis cache raises when Redis is cut, hung (socket timeout) or refusing.
CACHE_ERRORS: tuple[type[BaseException], ...] = (redis.RedisError, OSError)


class Outage:
    """Whether one dependency is down for this process, logged once per change."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.down = False
        self._lock = threading.Lock()

    def failed(self, exc: BaseException) -> None:
        """A call failed: log "<name> unreachable" if it was up (one line, no traceback)."""
        with self._lock:
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


CACHE_OUTAGE = Outage("cache (Redis)")
