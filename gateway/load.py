"""The load publisher: the live in-flight counts, written into AIInstance.current_load every second.

An instance's load is one signal, its live leases (instances.balancer.state): the gateway's
requests in every process, leases taken through select-instance for calls a client makes itself,
and the load a client reports (PUT .../load), which lapses unless renewed. Routing reads the
leases live. Everything else reads AIInstance.current_load: scaling's metric window, the
dashboard, the registry API and its counts, the Prometheus load gauges, the health load check,
the pool backend's drain. Each web process runs one publisher thread (started by ishchat/asgi.py)
that every PUBLISH_SECONDS counts the leases of every active instance in one store round trip,
writes the counts that changed, and stamps its LoadPublication row. So every reader sees the
same figure, at most about a second old, and a reader can tell a fresh count from a stale one:
with no publication for LOAD_STALE_SECONDS (instances.selectors; no web process running, or none reaching the database)
the counts are missing, not zero.

With Redis the leases are fleet-wide and every web process publishes the same counts (writes of
an unchanged count are skipped). Without Redis the leases are the process's own: run one web
process, as `make run` does.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from django.db import close_old_connections, connection

from gateway.registry import registry_snapshot
from instances.balancer.state import StateStore, get_state_store
from instances.services import instance_loads_publish, load_publications_prune
from ishchat.outage import DATABASE_ERRORS, DATABASE_OUTAGE

logger = logging.getLogger(__name__)

PUBLISH_SECONDS = 1.0


def publisher_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class LoadPublisher:
    def __init__(
        self,
        *,
        interval: float = PUBLISH_SECONDS,
        store: StateStore | None = None,
        clock: Callable[[], float] = time.time,
        name: str | None = None,
    ) -> None:
        self.interval = interval
        self.store = store
        self.clock = clock
        self.name = name or publisher_name()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def publish_once(self) -> int:
        """Count every active instance's live leases and write them; returns the rows changed.

        While the shared state (Redis) is unreachable the store answers from this process's own
        leases, a fraction of the fleet's: nothing is written then, so the counts go stale and read
        as missing (no scale-down on a false low) instead of as a fresh, wrong number."""
        snapshot = registry_snapshot()
        items = list(snapshot.by_id.values())
        store = self.store or get_state_store()
        counts = store.in_flight([item.instance_id for item in items], now=self.clock())
        if getattr(store, "degraded", False):
            return 0
        return instance_loads_publish(loads={item.pk: counts[item.instance_id] for item in items}, publisher=self.name)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="load-publisher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            load_publications_prune()
        except DATABASE_ERRORS as exc:
            if DATABASE_OUTAGE.is_outage(exc):
                DATABASE_OUTAGE.failed(exc)
        finally:
            connection.close()
        while not self._stop.wait(self.interval):
            try:
                close_old_connections()
                self.publish_once()
            except DATABASE_ERRORS as exc:  # one line per outage (DATABASE_OUTAGE), the next second tries again
                if DATABASE_OUTAGE.is_outage(exc):
                    DATABASE_OUTAGE.failed(exc)
            except Exception:  # never let the thread die: a load that stops being published reads as missing
                if not self._failing:
                    logger.exception("Publishing the instances' load failed; retrying every %g s", self.interval)
                self._failing = True
            else:
                DATABASE_OUTAGE.recovered()
                if self._failing:
                    logger.warning("Publishing the instances' load works again")
                self._failing = False
            finally:
                connection.close()  # back to the pool between publications


_publisher: LoadPublisher | None = None
_publisher_lock = threading.Lock()


def start_load_publisher() -> LoadPublisher:
    """The process's publisher, started once (a web process calls it at import of its ASGI app)."""
    global _publisher
    with _publisher_lock:
        if _publisher is None:
            _publisher = LoadPublisher()
            _publisher.start()
        return _publisher


__all__ = ["PUBLISH_SECONDS", "LoadPublisher", "publisher_name", "start_load_publisher"]
