"""GET /health: is this process able to do its work? No auth, for probes."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor

from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from ishchat.celery import app as celery_app
from ishchat.outage import DATABASE_OUTAGE

# A hung database (connections open, nothing answered) would hold the probe, and the probe's
# caller, for as long as it lasts: the probe runs in a thread of its own and /health waits for it
# this long. At most one probe is in flight; while a stuck one waits, /health waits for it again.
DATABASE_PROBE_SECONDS = 3.0
_database_probe_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="health-database")
_database_probe_lock = threading.Lock()
_database_probe: Future[None] | None = None


def _select_one() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    DATABASE_OUTAGE.recovered()  # what serves from its last reads (keys, the registry) asks again now


def _probe_in_thread() -> None:
    try:
        _select_one()
    finally:
        connection.close()  # this thread's connection goes back to the pool


def _check_database() -> None:
    global _database_probe
    if connection.connection is not None:
        # This request already holds a pooled connection (it authenticated): probe on it. A probe in
        # another thread would need a second connection, and under load every request would hold
        # one while waiting for the probe's, which no request gives back: a pool deadlock.
        _select_one()
        return
    with _database_probe_lock:
        if _database_probe is None or _database_probe.done():
            _database_probe = _database_probe_executor.submit(_probe_in_thread)
        probe = _database_probe
    try:
        probe.result(timeout=DATABASE_PROBE_SECONDS)
    except TimeoutError:  # concurrent.futures.TimeoutError since Python 3.11
        raise TimeoutError(f"no answer within {DATABASE_PROBE_SECONDS:g} s") from None


def _check_cache() -> None:
    key = f"health:{uuid.uuid4().hex}"
    cache.set(key, "ok", timeout=5)
    if cache.get(key) != "ok":
        raise RuntimeError("value written to the cache could not be read back")
    cache.delete(key)


def _check_broker() -> None:
    with celery_app.connection_for_write() as conn:
        # One attempt: it fails within the broker's connect/socket timeouts (settings.REDIS_TIMEOUT_SECONDS).
        conn.ensure_connection(max_retries=0)


COMPONENT_CHECKS = {"database": _check_database, "cache": _check_cache, "broker": _check_broker}
# Without these the process cannot work (503); without the others (Redis: cache, broker) it
# degrades and keeps serving, so /health answers 200 with status "degraded" and names them.
ESSENTIAL_COMPONENTS = frozenset({"database"})


def component_health() -> dict[str, dict[str, object]]:
    results: dict[str, dict[str, object]] = {}
    for name, check in COMPONENT_CHECKS.items():
        started = time.perf_counter()
        try:
            check()
        except Exception as exc:  # any failure means the component is down
            results[name] = {"status": "down", "error": f"{type(exc).__name__}: {exc}"}
        else:
            results[name] = {"status": "up"}
        results[name]["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
    return results


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    components = component_health()
    failed = sorted(name for name, result in components.items() if result["status"] != "up")
    essential_failed = ESSENTIAL_COMPONENTS.intersection(failed)
    status = "unhealthy" if essential_failed else "degraded" if failed else "healthy"
    body = {"status": status, "failed": failed, "components": components}
    return JsonResponse(body, status=503 if essential_failed else 200)


def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """JSON 404s for API clients; the HTML page for people."""
    from django.views.defaults import page_not_found

    if request.path.startswith(("/api/", "/v1/")):
        return JsonResponse({"detail": "Not found.", "path": request.path}, status=404)
    return page_not_found(request, exception)  # type: ignore[return-value]


def server_error(request: HttpRequest) -> JsonResponse:
    from django.views.defaults import server_error as html_server_error

    if request.path.startswith(("/api/", "/v1/")):
        return JsonResponse({"detail": "Internal server error."}, status=500)
    return html_server_error(request)  # type: ignore[return-value]
