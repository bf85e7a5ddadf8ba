"""The domain metrics, computed at scrape time from the database and the balancer's store.

Why at scrape time: the web processes and the Celery workers each have their own
memory, so an in-process counter would only count what that process saw. Every
sample here is derived from shared rows instead, which makes it correct whatever
the number of processes, and any process may answer a scrape:

- counters are counts of rows (RequestLog, HealthCheck, ScalingEvent) plus what
  retention deleted of them (MetricBaseline), so they never go down;
- the request-duration histogram is one conditional-count query over RequestLog;
- gauges read AIInstance/ProviderGroup, and the breaker state the shared store.

A scrape costs a fixed number of queries (SCRAPE_QUERY_BOUND, asserted by a test)
whatever the number of rows, and its result is cached for CACHE_SECONDS per process.

One exception is per process by nature: requestlog_dropped_total counts RequestLog rows
that never reached the database (so no row can count them), kept by each process's
buffer (gateway.logbuffer) and scraped from that process.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any

from django.db.models import Case, Count, FloatField, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Coalesce
from prometheus_client import Counter
from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

PREFIX = "instance_manager_"
CACHE_SECONDS = 5.0
SCRAPE_QUERY_BOUND = 12
# Upper bounds of the request-duration histogram, in seconds.
DURATION_BUCKETS_SECONDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

Labels = tuple[tuple[str, str], ...]
Key = tuple[str, Labels]
"""A sample: its full name (with _bucket/_sum/_count for the histogram) and sorted label pairs."""

# Per process (see the module docstring). reason: buffer_full (oldest rows dropped while the database
# was away too long) or refused (a row the database will never accept, isolated from its batch).
REQUESTLOG_DROP_REASONS = ("buffer_full", "refused")
REQUESTLOG_DROPPED = Counter(
    f"{PREFIX}requestlog_dropped",
    "RequestLog rows this process dropped without writing them, by reason (buffer_full, refused).",
    ["reason"],
)
for _reason in REQUESTLOG_DROP_REASONS:
    REQUESTLOG_DROPPED.labels(reason=_reason)

BREAKER_VALUES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
UP_STATUSES = frozenset({"healthy", "degraded"})


def labels_key(labels: Labels) -> str:
    """The canonical text of a label set, as MetricBaseline.labels stores it."""
    return json.dumps([list(pair) for pair in labels], separators=(",", ":"))


def labels_from_key(text: str) -> Labels:
    return tuple((str(name), str(value)) for name, value in json.loads(text))


def _labels(**values: object) -> Labels:
    return tuple(sorted((name, "" if value is None else str(value)) for name, value in values.items()))


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


# --- Counter samples from rows (the scrape and retention use the same functions) ---


def request_samples(requests: QuerySet[Any]) -> dict[Key, float]:
    """Counter samples of a RequestLog queryset, in three queries:

    requests_total{provider_type,model_name,instance_id,status}, selections_total (requests an
    instance was finally chosen for), tokens_total{...,kind}, failovers_total{provider_type,model_name,
    from_instance_id} (requests that left the instance first chosen), and the request-duration histogram
    {provider_type,model_name} over Coalesce(total_latency_ms, upstream_latency_ms).
    """
    samples: dict[Key, float] = defaultdict(float)
    rows = requests.values("provider_type", "model_name", "instance__instance_id", "status").annotate(
        n=Count("id"), prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens")
    )
    for row in rows.order_by():
        base = {
            "provider_type": row["provider_type"],
            "model_name": row["model_name"],
            "instance_id": row["instance__instance_id"],
        }
        samples[(f"{PREFIX}requests_total", _labels(**base, status=row["status"]))] += row["n"]
        if row["instance__instance_id"] is not None:
            samples[(f"{PREFIX}selections_total", _labels(**base))] += row["n"]
        for kind in ("prompt", "completion"):
            if row[kind]:
                samples[(f"{PREFIX}tokens_total", _labels(**base, kind=kind))] += row[kind]

    failovers = (
        requests.filter(failover=True)
        .values("provider_type", "model_name", "original_instance__instance_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    for row in failovers:
        labels = _labels(
            provider_type=row["provider_type"],
            model_name=row["model_name"],
            from_instance_id=row["original_instance__instance_id"],
        )
        samples[(f"{PREFIX}failovers_total", labels)] += row["n"]

    duration = Coalesce("total_latency_ms", "upstream_latency_ms", output_field=FloatField())
    buckets = {
        f"b{index}": Count("id", filter=Q(duration_ms__lte=bound * 1000.0))
        for index, bound in enumerate(DURATION_BUCKETS_SECONDS)
    }
    histogram = (
        requests.annotate(duration_ms=duration)
        .filter(duration_ms__isnull=False)
        .values("provider_type", "model_name")
        .annotate(n=Count("id"), total=Sum("duration_ms"), **buckets)
        .order_by()
    )
    name = f"{PREFIX}request_duration_seconds"
    for row in histogram:
        base = {"provider_type": row["provider_type"], "model_name": row["model_name"]}
        for index, bound in enumerate(DURATION_BUCKETS_SECONDS):
            samples[(f"{name}_bucket", _labels(**base, le=_le(bound)))] += row[f"b{index}"]
        samples[(f"{name}_bucket", _labels(**base, le="+Inf"))] += row["n"]
        samples[(f"{name}_count", _labels(**base))] += row["n"]
        samples[(f"{name}_sum", _labels(**base))] += (row["total"] or 0.0) / 1000.0
    return dict(samples)


def health_check_samples(checks: QuerySet[Any]) -> dict[Key, float]:
    """health_checks_total{check_type,status} of a HealthCheck queryset, in one query."""
    rows = checks.values("check_type", "status").annotate(n=Count("id")).order_by()
    return {
        (f"{PREFIX}health_checks_total", _labels(check_type=row["check_type"], status=row["status"])): float(row["n"])
        for row in rows
    }


def scaling_event_samples(events: QuerySet[Any]) -> dict[Key, float]:
    """scaling_events_total{provider_type,direction,reason,status}: reason is the event's trigger
    (the free-text reason would make one series per event); status is "acted" for actions and
    "skipped" for the records of actions a cooldown held back (at most one per cooldown period).
    An event never moves between the two, so each series only grows: count actions with
    status="acted"."""
    from scaling.choices import ScalingEventStatus

    rows = (
        events.annotate(
            acted=Case(When(status=ScalingEventStatus.SKIPPED, then=Value("skipped")), default=Value("acted"))
        )
        .values("group__provider_type", "direction", "trigger", "acted")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {
        (
            f"{PREFIX}scaling_events_total",
            _labels(
                provider_type=row["group__provider_type"],
                direction=row["direction"],
                reason=row["trigger"],
                status=row["acted"],
            ),
        ): float(row["n"])
        for row in rows
    }


def merge(*parts: Mapping[Key, float]) -> dict[Key, float]:
    total: dict[Key, float] = defaultdict(float)
    for part in parts:
        for key, value in part.items():
            total[key] += value
    return dict(total)


def baseline_samples() -> dict[Key, float]:
    from monitoring.models import MetricBaseline

    return {
        (sample, labels_from_key(labels)): value
        for sample, labels, value in MetricBaseline.objects.values_list("sample", "labels", "value")
    }


def estimated_cost(prompt_tokens: float, completion_tokens: float, price: Mapping[str, Any] | None) -> Decimal:
    """prompt/1000 * input_per_1k + completion/1000 * output_per_1k; 0 for a model without a price."""
    if not price:
        return Decimal(0)
    cost = Decimal(str(prompt_tokens)) / 1000 * Decimal(str(price.get("input_per_1k", 0.0)))
    cost += Decimal(str(completion_tokens)) / 1000 * Decimal(str(price.get("output_per_1k", 0.0)))
    return cost.quantize(Decimal("0.000001"))


def cost_samples(counters: Mapping[Key, float], pricing: Mapping[str, Any]) -> dict[Key, float]:
    """estimated_cost_total{provider_type,model_name} from the token counters at today's prices."""
    tokens: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: {"prompt": 0.0, "completion": 0.0})
    for (sample, labels), value in counters.items():
        if sample == f"{PREFIX}tokens_total":
            label = dict(labels)
            tokens[(label["provider_type"], label["model_name"])][label["kind"]] += value
    return {
        (f"{PREFIX}estimated_cost_total", _labels(provider_type=provider, model_name=model)): float(
            estimated_cost(counts["prompt"], counts["completion"], pricing.get(model))
        )
        for (provider, model), counts in tokens.items()
    }


# --- Gauges ----------------------------------------------------------------------


def gauge_samples(*, now: float | None = None) -> dict[Key, float]:
    """Fleet gauges: instances by status, per-instance health/load/status/breaker, per-group counts."""
    from instances.balancer.state import get_state_store
    from instances.models import AIInstance
    from scaling.models import ProviderGroup

    now = time.time() if now is None else now
    samples: dict[Key, float] = {}
    counts = (
        AIInstance.objects.filter(is_active=True).values("provider_type", "status").annotate(n=Count("id")).order_by()
    )
    for row in counts:
        key = (f"{PREFIX}instances_total", _labels(provider_type=row["provider_type"], status=row["status"]))
        samples[key] = float(row["n"])

    instances = list(
        AIInstance.objects.filter(is_active=True)
        .order_by("id")
        .values_list(
            "instance_id",
            "instance_name",
            "provider_type",
            "model_name",
            "status",
            "health_score",
            "current_load",
            "max_concurrent_requests",
        )
    )
    breakers = get_state_store().breaker_states([str(row[0]) for row in instances]) if instances else {}
    for instance_id, name, provider, model, status, score, load, capacity in instances:
        base = _labels(instance_id=instance_id, instance_name=name, provider_type=provider, model_name=model)
        samples[(f"{PREFIX}instance_status", (*base, ("status", status)))] = 1.0
        samples[(f"{PREFIX}instance_up", base)] = 1.0 if status in UP_STATUSES else 0.0
        if score is not None:
            samples[(f"{PREFIX}instance_health_score", base)] = float(score)
        samples[(f"{PREFIX}instance_in_flight_requests", base)] = float(load)
        samples[(f"{PREFIX}instance_load_ratio", base)] = min(1.0, load / capacity) if capacity else 0.0
        breaker = breakers.get(str(instance_id))
        phase = breaker.phase_at(now).value if breaker is not None else "closed"
        samples[(f"{PREFIX}breaker_state", base)] = BREAKER_VALUES.get(phase, 0.0)

    groups = ProviderGroup.objects.annotate(
        total=Count("instances", filter=Q(instances__is_active=True)),
        healthy=Count("instances", filter=Q(instances__is_active=True, instances__status="healthy")),
    ).values_list("group_name", "provider_type", "total", "healthy", "desired_instances")
    for group_name, provider, total, healthy, desired in groups.order_by():
        base = _labels(group=group_name, provider_type=provider)
        samples[(f"{PREFIX}group_instances", base)] = float(total)
        samples[(f"{PREFIX}group_healthy_instances", base)] = float(healthy)
        samples[(f"{PREFIX}group_desired_instances", base)] = float(desired)
    return samples


# --- The collector -----------------------------------------------------------------

MODEL = ["provider_type", "model_name"]
COUNTERS = {
    "requests_total": ("Proxied requests by final instance and outcome.", [*MODEL, "instance_id", "status"]),
    "selections_total": ("Requests the balancer finally chose each instance for.", [*MODEL, "instance_id"]),
    "failovers_total": ("Requests that failed over away from the instance first chosen.", [*MODEL, "from_instance_id"]),
    "tokens_total": ("Tokens of proxied requests (kind: prompt or completion).", [*MODEL, "instance_id", "kind"]),
    "estimated_cost_total": ("Estimated cost of the tokens at today's prices (pricing.<model>).", MODEL),
    "health_checks_total": ("Health checks run, by type and result.", ["check_type", "status"]),
    "scaling_events_total": (
        "Scaling events, by direction, trigger and status (acted, or skipped: held back by a cooldown).",
        ["provider_type", "direction", "reason", "status"],
    ),
}
INSTANCE_LABELS = ["instance_id", "instance_name", "provider_type", "model_name"]
GAUGES = {
    "instances_total": ("Registered (active) instances by status.", ["provider_type", "status"]),
    "instance_status": ("1 for the instance's current status.", [*INSTANCE_LABELS, "status"]),
    "instance_up": ("1 when the instance is healthy or degraded, else 0.", INSTANCE_LABELS),
    "instance_health_score": ("Last health score, 0..1.", INSTANCE_LABELS),
    "instance_in_flight_requests": (
        "In-flight requests fleet-wide: gateway requests, select-instance leases, reported load.",
        INSTANCE_LABELS,
    ),
    "instance_load_ratio": ("In-flight requests / max_concurrent_requests, 0..1.", INSTANCE_LABELS),
    "breaker_state": ("Circuit breaker: 0 closed, 1 half-open, 2 open.", INSTANCE_LABELS),
    "group_instances": ("Active instances in the provider group.", ["group", "provider_type"]),
    "group_healthy_instances": ("Healthy instances in the provider group.", ["group", "provider_type"]),
    "group_desired_instances": ("The group's desired instance count.", ["group", "provider_type"]),
    "scrape_error": ("1 when the last computation of these metrics failed.", []),
}
HISTOGRAM = ("request_duration_seconds", "Duration of proxied requests as the client saw them.", MODEL)


def compute_samples() -> dict[Key, float]:
    """Every sample of the domain metrics, from a fixed number of queries."""
    from configuration.selectors import config_value
    from instances.models import HealthCheck, RequestLog
    from scaling.models import ScalingEvent

    counters = merge(
        request_samples(RequestLog.objects.all()),
        health_check_samples(HealthCheck.objects.all()),
        scaling_event_samples(ScalingEvent.objects.all()),
        baseline_samples(),
    )
    pricing = config_value("pricing") or {}
    return {**counters, **cost_samples(counters, pricing), **gauge_samples()}


def build_families(samples: Mapping[Key, float], *, error: bool = False) -> list[Any]:
    grouped: dict[str, list[tuple[Labels, float]]] = defaultdict(list)
    for (sample, labels), value in samples.items():
        grouped[sample].append((labels, value))

    families: list[Any] = []
    for short, (doc, label_names) in COUNTERS.items():
        family = CounterMetricFamily(f"{PREFIX}{short}", doc, labels=label_names)
        for labels, value in sorted(grouped.get(f"{PREFIX}{short}", [])):
            family.add_metric([dict(labels).get(n, "") for n in label_names], value)
        families.append(family)
    for short, (doc, label_names) in GAUGES.items():
        gauge = GaugeMetricFamily(f"{PREFIX}{short}", doc, labels=label_names)
        if short == "scrape_error":
            gauge.add_metric([], 1.0 if error else 0.0)
        for labels, value in sorted(grouped.get(f"{PREFIX}{short}", [])):
            gauge.add_metric([dict(labels).get(n, "") for n in label_names], value)
        families.append(gauge)

    short, doc, label_names = HISTOGRAM
    name = f"{PREFIX}{short}"
    histogram = HistogramMetricFamily(name, doc, labels=label_names)
    series: dict[Labels, dict[str, Any]] = defaultdict(lambda: {"buckets": {}, "sum": 0.0})
    for labels, value in grouped.get(f"{name}_bucket", []):
        label = dict(labels)
        le = label.pop("le")
        series[_labels(**label)]["buckets"][le] = value
    for labels, value in grouped.get(f"{name}_sum", []):
        series[labels]["sum"] = value
    for labels, data in sorted(series.items()):
        bounds = [*(_le(b) for b in DURATION_BUCKETS_SECONDS), "+Inf"]
        buckets = [(le, data["buckets"].get(le, 0.0)) for le in bounds]
        histogram.add_metric([dict(labels).get(n, "") for n in label_names], buckets, data["sum"])
    families.append(histogram)
    return families


class DomainCollector(Collector):
    """Registered once on the default REGISTRY; recomputes at most every `ttl` seconds per process."""

    def __init__(
        self,
        *,
        ttl: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        compute: Callable[[], dict[Key, float]] = compute_samples,
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self.compute = compute
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Any]] | None = None

    def describe(self) -> Iterable[Any]:
        return build_families({})

    def collect(self) -> Iterator[Any]:
        with self._lock:
            now = self.clock()
            if self._cached is None or now - self._cached[0] >= self.ttl:
                try:
                    families = build_families(self.compute())
                except Exception:
                    logger.exception("computing the domain metrics failed")
                    families = build_families({}, error=True)
                self._cached = (now, families)
            families = self._cached[1]
        yield from families

    def invalidate(self) -> None:
        with self._lock:
            self._cached = None


_collector: DomainCollector | None = None


def register_collector() -> DomainCollector:
    global _collector
    if _collector is None:
        _collector = DomainCollector()
        REGISTRY.register(_collector)
    return _collector


def collector() -> DomainCollector:
    return register_collector()


# --- The separate metrics port ------------------------------------------------------


def start_metrics_server(port: int | None = None, addr: str = "0.0.0.0") -> bool:  # noqa: S104 - scraped from outside
    """Serve the default registry on `port` (settings.METRICS_PORT) in a daemon thread, once per process.

    Meant for the web process (ishchat/asgi.py). When several web workers start, the first one binds the
    port and the others log and carry on: the domain metrics come from the database, so any process
    answers with the same values (only django_prometheus' per-process request metrics differ).
    """
    global _server_started
    from django.conf import settings

    port = port if port is not None else getattr(settings, "METRICS_PORT", None)
    if not port:
        return False
    with _server_lock:
        if _server_started:
            return False
        try:
            _serve(addr, int(port))
        except OSError as exc:
            logger.info("metrics port %s not bound in this process: %s", port, exc)
            return False
        _server_started = True
        logger.info("metrics served on %s:%s", addr, port)
        return True


_server_started = False
_server_lock = threading.Lock()


def _serve(addr: str, port: int) -> Any:
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from django.db import connections
    from prometheus_client import make_wsgi_app

    metrics_app = make_wsgi_app(REGISTRY)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        try:
            return metrics_app(environ, start_response)
        finally:
            # Each scrape runs in a fresh thread: close the connections it opened.
            connections.close_all()

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = make_server(addr, port, app, Server, handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="metrics-server", daemon=True)
    thread.start()
    return server
