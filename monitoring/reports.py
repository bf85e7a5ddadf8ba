"""Performance reports: assembled from selectors.report_data (pure), rendered as JSON, CSV or HTML.

Definitions (the same in every format):
- success_rate = successes / requests, 0..1 (None without requests);
- p50/p95/p99_ms: nearest-rank percentiles of successful requests' latency
  (Coalesce(upstream, total)), like the alert rules;
- uptime = health checks that found the instance healthy or degraded / all its checks
  in the window, 0..1 (None without checks); a provider's is over its instances' checks;
- incidents = alerts opened in the window; scaling_events = events created in it, by direction;
- estimated_cost = prompt/1000 * input_per_1k + completion/1000 * output_per_1k at today's prices;
- trend: the same numbers over the previous window of the same length, ending where this one starts,
  with requests/cost/p95 as relative change and success_rate/uptime as absolute difference.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.template.loader import render_to_string

from monitoring.metrics import estimated_cost
from monitoring.rollups import change

FORMATS = ("json", "csv", "html")
CONTENT_TYPES = {"json": "application/json", "csv": "text/csv", "html": "text/html"}
CSV_COLUMNS = [
    "scope",
    "provider_type",
    "instance_id",
    "instance_name",
    "model_name",
    "requests",
    "successes",
    "failures",
    "timeouts",
    "success_rate",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "prompt_tokens",
    "completion_tokens",
    "estimated_cost",
    "uptime",
    "health_checks",
    "incidents",
    "scaling_up",
    "scaling_down",
    "requests_change",
    "success_rate_delta",
    "p95_change",
    "estimated_cost_change",
    "uptime_delta",
]


def _empty() -> dict[str, Any]:
    return {
        "requests": 0,
        "successes": 0,
        "failures": 0,
        "timeouts": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cost": Decimal(0),
        "health_checks": 0,
        "checks_up": 0,
        "incidents": 0,
    }


def _finish(acc: dict[str, Any], percentiles: dict[float, float]) -> dict[str, Any]:
    requests = acc["requests"]
    return {
        "requests": requests,
        "successes": acc["successes"],
        "failures": acc["failures"],
        "timeouts": acc["timeouts"],
        "success_rate": acc["successes"] / requests if requests else None,
        "p50_ms": percentiles.get(0.50),
        "p95_ms": percentiles.get(0.95),
        "p99_ms": percentiles.get(0.99),
        "prompt_tokens": acc["prompt_tokens"],
        "completion_tokens": acc["completion_tokens"],
        "estimated_cost": float(acc["cost"]),
        "uptime": acc["checks_up"] / acc["health_checks"] if acc["health_checks"] else None,
        "health_checks": acc["health_checks"],
        "incidents": acc["incidents"],
    }


def _delta(current: float | None, previous: float | None) -> float | None:
    return None if current is None or previous is None else current - previous


def trend(current: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    previous = previous or _finish(_empty(), {})
    return {
        "requests_change": change(current["requests"], previous["requests"]),
        "success_rate_delta": _delta(current["success_rate"], previous["success_rate"]),
        "p95_change": change(current["p95_ms"], previous["p95_ms"]),
        "estimated_cost_change": change(current["estimated_cost"], previous["estimated_cost"]),
        "uptime_delta": _delta(current["uptime"], previous["uptime"]),
        "previous": {key: previous[key] for key in ("requests", "success_rate", "p95_ms", "estimated_cost", "uptime")},
    }


def summarise(data: dict[str, Any], pricing: dict[str, Any]) -> dict[str, Any]:
    """{"total": metrics, "providers": {provider: metrics}, "instances": {instance pk: metrics},
    "scaling": {provider: {direction: n}}} of one window's raw numbers."""
    total = _empty()
    providers: defaultdict[str, dict[str, Any]] = defaultdict(_empty)
    instances: defaultdict[int, dict[str, Any]] = defaultdict(_empty)
    for row in data["requests"]:
        cost = estimated_cost(row["prompt_tokens"], row["completion_tokens"], pricing.get(row["model_name"]))
        failures = row["requests"] - row["successes"] - row["timeouts"]
        targets = [total, providers[row["provider_type"]]]
        if row["instance_id"] is not None:
            targets.append(instances[row["instance_id"]])
        for acc in targets:
            acc["requests"] += row["requests"]
            acc["successes"] += row["successes"]
            acc["timeouts"] += row["timeouts"]
            acc["failures"] += failures
            acc["prompt_tokens"] += row["prompt_tokens"]
            acc["completion_tokens"] += row["completion_tokens"]
            acc["cost"] += cost
    info = data["instances"]
    for pk, (checks, up) in data["checks"].items():
        provider = info[pk]["provider_type"] if pk in info else None
        for acc in [total, instances[pk], *([providers[provider]] if provider else [])]:
            acc["health_checks"] += checks
            acc["checks_up"] += up
    for row in data["alerts"]:
        total["incidents"] += row["n"]
        if row["instance_id"] is not None:
            instances[row["instance_id"]]["incidents"] += row["n"]
        provider = row["instance__provider_type"] or row["group__provider_type"]
        if provider:
            providers[provider]["incidents"] += row["n"]
    scaling: dict[str, dict[str, int]] = defaultdict(lambda: {"up": 0, "down": 0, "none": 0})
    for row in data["scaling"]:
        scaling[row["group__provider_type"]][row["direction"]] += row["n"]
    for pk in info:
        instances[pk]
    for pk in instances:
        if pk in info:
            providers[info[pk]["provider_type"]]
    for provider in scaling:
        providers[provider]
    percentiles = data["percentiles"]
    return {
        "total": _finish(total, percentiles["total"]),
        "providers": {p: _finish(acc, percentiles["provider"].get(p, {})) for p, acc in providers.items()},
        "instances": {pk: _finish(acc, percentiles["instance"].get(pk, {})) for pk, acc in instances.items()},
        "scaling": {p: dict(counts) for p, counts in scaling.items()},
    }


def build_report(
    *,
    current: dict[str, Any],
    previous: dict[str, Any],
    start: datetime,
    end: datetime,
    previous_start: datetime,
    generated_at: datetime,
    pricing: dict[str, Any],
) -> dict[str, Any]:
    """The report body: window, totals, providers and instances, each with its trend."""
    now, before = summarise(current, pricing), summarise(previous, pricing)
    info = {**previous["instances"], **current["instances"]}
    providers = []
    for provider in sorted(now["providers"]):
        metrics = now["providers"][provider]
        scaling = now["scaling"].get(provider, {"up": 0, "down": 0, "none": 0})
        providers.append(
            {
                "provider_type": provider,
                **metrics,
                "scaling_events": scaling,
                "trend": trend(metrics, before["providers"].get(provider)),
            }
        )
    instances = []
    for pk, metrics in now["instances"].items():
        row = info.get(pk, {})
        instances.append(
            {
                "instance_id": str(row.get("instance_id", "")),
                "instance_name": row.get("instance_name", ""),
                "provider_type": row.get("provider_type", ""),
                "model_name": row.get("model_name", ""),
                "status": row.get("status", ""),
                **metrics,
                "trend": trend(metrics, before["instances"].get(pk)),
            }
        )
    instances.sort(key=lambda r: (r["provider_type"], r["instance_name"]))
    return {
        "window": {"start": start.isoformat(), "end": end.isoformat(), "seconds": (end - start).total_seconds()},
        "previous_window": {"start": previous_start.isoformat(), "end": start.isoformat()},
        "generated_at": generated_at.isoformat(),
        "totals": {**now["total"], "trend": trend(now["total"], before["total"])},
        "providers": providers,
        "instances": instances,
    }


# --- Formats ------------------------------------------------------------------------


def _csv_row(scope: str, row: dict[str, Any], scaling: dict[str, int] | None = None) -> dict[str, Any]:
    out = {column: row.get(column, "") for column in CSV_COLUMNS}
    out["scope"] = scope
    for key in ("requests_change", "success_rate_delta", "p95_change", "estimated_cost_change", "uptime_delta"):
        out[key] = row["trend"][key]
    if scaling is not None:
        out["scaling_up"], out["scaling_down"] = scaling.get("up", 0), scaling.get("down", 0)
    return {key: "" if value is None else value for key, value in out.items()}


def render_csv(body: dict[str, Any]) -> str:
    """One row for the totals, one per provider, one per instance."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerow(_csv_row("total", body["totals"]))
    for provider in body["providers"]:
        writer.writerow(_csv_row("provider", provider, provider["scaling_events"]))
    for instance in body["instances"]:
        writer.writerow(_csv_row("instance", instance))
    return buffer.getvalue()


def render_html(body: dict[str, Any]) -> str:
    return render_to_string("monitoring/performance_report.html", {"report": body})


def render(body: dict[str, Any], fmt: str) -> str:
    import json

    if fmt == "json":
        return json.dumps(body, indent=2, default=str)
    if fmt == "csv":
        return render_csv(body)
    if fmt == "html":
        return render_html(body)
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
