"""Operator pages. Thin: read through selectors, act through the services the API uses, render.

One HTMX pattern everywhere: a page template includes its partials, and the same view returns
just the main partial when the request comes from htmx (filters, pagination, polling). A
polled fragment answers 286 (htmx stops polling) when there is nothing left to watch.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from django.apps import apps
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.middleware import HtmxDetails

from alerts.choices import AlertStatus
from alerts.selectors import alert_get
from alerts.services import alert_acknowledge
from dashboard import charts
from dashboard import selectors as sel
from instances.choices import CheckType, InstanceStatus, ProviderType
from instances.health.selectors import health_history
from instances.health.services import health_check_instance
from instances.models import AIInstance
from instances.selectors import instance_get
from instances.services import instance_enable, instance_set_operator_status
from ishchat.errors import ConflictError
from scaling.selectors import group_get


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


# HTMX status that stops polling: the fragment is final.
STOP_POLLING = 286
POLL_SECONDS = 5


def _actor(request: HtmxHttpRequest) -> str:
    return f"dashboard:{request.user.get_username()}"


def _page(
    request: HtmxHttpRequest, page: str, partial: str, context: dict[str, Any], *, status: int = 200
) -> HttpResponse:
    """The full page, or only its partial for an htmx request (same context either way)."""
    context.setdefault("poll_seconds", POLL_SECONDS)
    if request.htmx:
        return render(request, partial, context, status=status)
    return render(request, page, {**context, "nav": sel.nav_counters()}, status=status)


def _with_counters(request: HtmxHttpRequest, html: str) -> HttpResponse:
    """A swapped fragment plus the header counters, out of band."""
    counters = render_to_string(
        "dashboard/partials/nav_counters.html", {"nav": sel.nav_counters(), "oob": True}, request=request
    )
    return HttpResponse(html + counters)


def _error_text(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return " ".join(exc.messages)
    return getattr(exc, "message", str(exc))


# --- overview -------------------------------------------------------------------------------------


def _traffic_charts(series: sel.TrafficSeries) -> dict[str, str]:
    return {
        "requests": charts.line_chart(
            [charts.Series("requests", series.requests), charts.Series("failed", series.errors, color="#dc2626")],
            series.labels,
            title="Requests per minute",
        ),
        "latency": charts.line_chart(
            [
                charts.Series("avg", series.avg_latency),
                charts.Series("max", series.max_latency, color="#d97706", dashed=True),
            ],
            series.labels,
            title="Latency",
            unit=" ms",
        ),
    }


@staff_member_required
@require_GET
def overview(request: HtmxHttpRequest) -> HttpResponse:
    context = {
        "kpis": sel.overview_kpis(),
        "charts": _traffic_charts(sel.traffic_series()),
        "feed": sel.recent_feed(),
        "section": "overview",
    }
    return _page(request, "dashboard/overview.html", "dashboard/partials/overview.html", context)


# --- instances ------------------------------------------------------------------------------------


def _query(request: HtmxHttpRequest, **changes: Any) -> str:
    """The current query string with `changes` applied (empty values dropped)."""
    params = {key: value for key, value in request.GET.items() if key != "page"}
    params.update(changes)
    return urlencode({key: value for key, value in params.items() if value not in ("", None)})


def _sort_links(request: HtmxHttpRequest, current: str) -> dict[str, dict[str, str]]:
    links = {}
    for column in ("name", "provider", "status", "score", "load"):
        active = current.lstrip("-") == column
        descending = current.startswith("-")
        target = f"-{column}" if active and not descending else column
        arrow = ("▼" if descending else "▲") if active else ""
        links[column] = {"query": _query(request, sort=target), "arrow": arrow}
    return links


@staff_member_required
@require_GET
def instances(request: HtmxHttpRequest) -> HttpResponse:
    filters = sel.InstanceFilters.from_query(request.GET)
    page = sel.instance_table_page(filters, page=request.GET.get("page"))
    rows = list(page.object_list)
    phases = sel.breaker_phases(rows)
    context = {
        "page": page,
        "rows": [(instance, phases.get(str(instance.instance_id), "closed")) for instance in rows],
        "filters": filters,
        "sort_links": _sort_links(request, filters.sort),
        "page_query": _query(request),
        "poll_url": f"{request.path}?{_query(request, page=page.number)}",
        "polling": bool(rows),
        "section": "instances",
    }
    if not request.htmx:
        context.update(
            options=sel.instance_filter_options(),
            providers=ProviderType.choices,
            statuses=InstanceStatus.choices,
        )
        return _page(request, "dashboard/instances.html", "dashboard/partials/instance_table.html", context)
    html = render_to_string(
        "dashboard/partials/instance_table.html", {**context, "poll_seconds": POLL_SECONDS}, request
    )
    response = _with_counters(request, html)
    if not rows:
        response.status_code = STOP_POLLING
    return response


ROW_ACTIONS = {
    "check": "health check",
    "drain": InstanceStatus.DRAINING,
    "maintenance": InstanceStatus.MAINTENANCE,
    "enable": InstanceStatus.STARTING,
}


@staff_member_required
@require_POST
def instance_action(request: HtmxHttpRequest, instance_id: str, action: str) -> HttpResponse:
    """A row action through the same services the API calls; answers with the row, re-rendered."""
    instance = instance_get(instance_id)
    message, ok = "", True
    try:
        if action == "check":
            check = health_check_instance(instance=instance, check_type=CheckType.BASIC)
            message = f"Checked: {check.status}, score {check.score:.2f}"
            instance = instance_get(instance_id)
        elif action == "enable":
            instance_enable(instance=instance, actor=_actor(request))
            message = "Enabled: starting until health checks confirm it"
        elif action in ("drain", "maintenance"):
            instance_set_operator_status(instance=instance, status=ROW_ACTIONS[action], actor=_actor(request))
            message = f"Set to {action if action == 'maintenance' else 'draining'}"
        else:
            return HttpResponse(f"Unknown action {action!r}.", status=400)
    except (ValidationError, ConflictError) as exc:
        message, ok = _error_text(exc), False
    phase = sel.breaker_phases([instance]).get(str(instance.instance_id), "closed")
    html = render_to_string(
        "dashboard/partials/instance_row.html",
        {"instance": instance, "phase": phase, "message": message, "ok": ok},
        request=request,
    )
    return _with_counters(request, html)


def _masked_endpoint(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username}:••••@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def _instance_configuration(instance: AIInstance) -> list[tuple[str, Any]]:
    """What an operator may see of an instance's settings; the provider key only as 'set, ends …1234'."""
    if instance.api_key_encrypted:
        key = f"set, ends …{instance.api_key_last4}" if instance.api_key_last4 else "set"
    else:
        key = "not set (provider default)"
    return [
        ("Provider", instance.get_provider_type_display()),
        ("Model", instance.model_name),
        ("Endpoint", _masked_endpoint(instance.endpoint_url)),
        ("API key", key),
        ("Region", instance.region or "—"),
        ("Group", instance.group.group_name if instance.group else "—"),
        ("Weight / priority", f"{instance.weight} / {instance.priority}"),
        ("Max concurrent", instance.max_concurrent_requests),
        ("Requests / tokens per minute", (
            f"{instance.requests_per_minute or '—'} / {instance.tokens_per_minute or '—'}"
        )),
        ("Temperature / max tokens", f"{instance.temperature} / {instance.max_tokens}"),
        ("Timeout", f"{instance.timeout:g} s"),
        ("Tags", ", ".join(instance.tags) if instance.tags else "—"),
    ]


@staff_member_required
@require_GET
def instance_detail(request: HtmxHttpRequest, instance_id: str) -> HttpResponse:
    """The instance page; its live panel polls and stops (286) once the instance is deregistered."""
    instance = instance_get(instance_id)
    phase = sel.breaker_phases([instance]).get(str(instance.instance_id), "closed")
    context: dict[str, Any] = {
        "instance": instance,
        "phase": phase,
        "polling": instance.is_active,
        "section": "instances",
    }
    status = 200 if instance.is_active or not request.htmx else STOP_POLLING
    if request.htmx:
        return _page(request, "", "dashboard/partials/instance_live.html", context, status=status)
    checks = list(health_history(instance, limit=60))
    oldest_first = list(reversed(checks))
    labels = [timezone.localtime(c.checked_at).strftime("%H:%M") for c in oldest_first]
    context.update(
        checks=checks[:20],
        health_chart=charts.line_chart(
            [charts.Series("score", [c.score for c in oldest_first], color="#16a34a")],
            labels,
            title="Health score (last checks)",
            y_max=1.0,
        ),
        check_latency_chart=charts.line_chart(
            [charts.Series("check response", [c.response_time_ms for c in oldest_first], color="#7c3aed")],
            labels,
            title="Health check response time",
            unit=" ms",
        ),
        traffic=_traffic_charts(sel.traffic_series(instance=instance)),
        requests=sel.instance_recent_requests(instance),
        transitions=sel.instance_transitions(instance),
        configuration=_instance_configuration(instance),
    )
    return _page(request, "dashboard/instance_detail.html", "dashboard/partials/instance_live.html", context)


# --- groups and scaling ---------------------------------------------------------------------------


def _scaling_services() -> Any:
    """scaling.services when this checkout has it (manual scaling and dry runs), else None."""
    try:
        from scaling import services
    except ImportError:  # pragma: no cover - the read-only fallback
        return None
    return services if hasattr(services, "group_scale_manual") and hasattr(services, "group_evaluate") else None


@staff_member_required
@require_GET
def groups(request: HtmxHttpRequest) -> HttpResponse:
    rows = list(sel.group_rows())
    context = {"groups": rows, "section": "groups"}
    return _page(request, "dashboard/groups.html", "dashboard/partials/group_table.html", context)


def _decision_context(decision: dict[str, Any] | None) -> dict[str, Any]:
    if not decision:
        return {"decision": None}
    forecast = decision.get("forecast") or {}
    values = [float(v) for v in forecast.get("values") or []]
    chart = None
    if values:
        chart = charts.line_chart(
            [charts.Series("forecast req/min", values, color="#7c3aed")],
            [f"+{i}" for i in range(1, len(values) + 1)],
            title=f"Forecast ({forecast.get('method', '')}, {forecast.get('horizon_seconds', '')} s horizon)",
        )
    return {"decision": decision, "forecast_chart": chart, "forecast": forecast}


def _policy_warnings(group: Any) -> list[str]:
    services = _scaling_services()
    return services.group_policy_warnings(group) if services is not None else []


def _group_context(request: HtmxHttpRequest, group_id: str) -> dict[str, Any]:
    group = sel.group_row(group_id)
    return {
        "group": group,
        "events": sel.group_events(group),
        "scaling_available": _scaling_services() is not None,
        "policy_warnings": _policy_warnings(group),
        "section": "groups",
        **_decision_context(group.last_decision),
    }


@staff_member_required
@require_GET
def group_detail(request: HtmxHttpRequest, group_id: str) -> HttpResponse:
    context = _group_context(request, group_id)
    return _page(request, "dashboard/group_detail.html", "dashboard/partials/group_panel.html", context)


@staff_member_required
@require_POST
def group_scale(request: HtmxHttpRequest, group_id: str) -> HttpResponse:
    """The manual scale form: group_scale_manual, then the group panel swapped in (or the form's error)."""
    services = _scaling_services()
    group = group_get(group_id)
    error = ""
    raw = request.POST.get("desired_instances", "").strip()
    if services is None:
        error = "Manual scaling is not available in this build."
    elif not raw.isdigit():
        error = "Enter the number of instances wanted."
    else:
        try:
            services.group_scale_manual(
                group=group, desired=int(raw), reason=request.POST.get("reason", "")[:200], actor=_actor(request)
            )
        except (ValidationError, ConflictError) as exc:
            error = _error_text(exc)
    context = _group_context(request, group_id)
    context.update(scale_error=error, scale_done="" if error else f"Scaling to {raw} requested.")
    return render(request, "dashboard/partials/group_panel.html", context, status=200 if not error else 422)


@staff_member_required
@require_http_methods(["GET", "POST"])
def group_dry_run(request: HtmxHttpRequest, group_id: str) -> HttpResponse:
    """The engine's reasoning for the group right now, without acting (group_evaluate(dry_run=True))."""
    services = _scaling_services()
    group = group_get(group_id)
    if services is None:
        return render(request, "dashboard/partials/group_decision.html", {"unavailable": True, "group": group})
    decision = services.group_evaluate(group_id=group.pk, dry_run=True)
    context = {"group": group, "dry_run": True, **_decision_context(decision)}
    return render(request, "dashboard/partials/group_decision.html", context)


# The simulation runs in the request: a few seconds for three days (longer ones: manage.py simulate_scaling).
SIMULATION_MAX_DAYS = 3.0


@staff_member_required
@require_POST
def group_simulate(request: HtmxHttpRequest, group_id: str) -> HttpResponse:
    """What the group's policy (and the HPA v2 defaults) would have done on its recorded traffic of
    the last N days (services.group_simulation): the simulation card, or its error."""
    services = _scaling_services()
    group = group_get(group_id)
    context: dict[str, Any] = {"group": group, "days": request.POST.get("days", "1").strip()}
    capacity_raw = request.POST.get("capacity_rpm", "").strip()
    try:
        days = float(context["days"])
        capacity = float(capacity_raw) if capacity_raw else None
    except ValueError:
        context["simulation_error"] = "Days and capacity are numbers."
        return render(request, "dashboard/partials/group_simulation.html", context, status=422)
    if services is None:
        context["simulation_error"] = "Simulation is not available in this build."
        return render(request, "dashboard/partials/group_simulation.html", context, status=422)
    try:
        trace, config, results = services.group_simulation(
            group=group, history_days=days, capacity_rpm=capacity, max_days=SIMULATION_MAX_DAYS
        )
    except ValidationError as exc:
        context["simulation_error"] = _error_text(exc)
        return render(request, "dashboard/partials/group_simulation.html", context, status=422)
    context.update(trace=trace, config=config, results=results)
    return render(request, "dashboard/partials/group_simulation.html", context)


# --- load balancer, alerts, reports, configuration ------------------------------------------------


@staff_member_required
@require_GET
def balancer(request: HtmxHttpRequest) -> HttpResponse:
    data = sel.balancer_distribution()
    context = {
        **data,
        "distribution_chart": charts.bar_chart(
            [(row["instance__instance_name"], row["n"]) for row in data["rows"]],
            title=f"Requests by instance, last {data['hours']} h",
        ),
        "breakers": sel.breakers_not_closed(),
        "section": "balancer",
    }
    return _page(request, "dashboard/balancer.html", "dashboard/partials/balancer_body.html", context)


@staff_member_required
@require_GET
def alerts(request: HtmxHttpRequest) -> HttpResponse:
    status = request.GET.get("status", AlertStatus.OPEN)
    if status not in (*AlertStatus.values, "all"):
        status = AlertStatus.OPEN
    page = sel.alert_page(status="" if status == "all" else status, page=request.GET.get("page"))
    context = {
        "page": page,
        "status": status,
        "statuses": [*AlertStatus.choices, ("all", "All")],
        "counts": sel.alert_status_counts(),
        "section": "alerts",
    }
    return _page(request, "dashboard/alerts.html", "dashboard/partials/alert_table.html", context)


@staff_member_required
@require_POST
def alert_ack(request: HtmxHttpRequest, alert_id: int) -> HttpResponse:
    alert = alert_get(alert_id)
    message = ""
    try:
        alert = alert_acknowledge(alert=alert, actor=_actor(request))
    except ConflictError as exc:
        message = exc.message
    html = render_to_string("dashboard/partials/alert_row.html", {"alert": alert, "message": message}, request)
    return _with_counters(request, html)


@staff_member_required
@require_GET
def reports(request: HtmxHttpRequest) -> HttpResponse:
    """Stored performance reports (monitoring app), newest first; an honest placeholder without it."""
    context: dict[str, Any] = {"monitoring_installed": apps.is_installed("monitoring"), "section": "reports"}
    if context["monitoring_installed"]:
        from monitoring.selectors import report_list

        context["page"] = Paginator(report_list(), sel.PAGE_SIZE).get_page(request.GET.get("page"))
        context["formats"] = ("html", "csv", "json")
    return _page(request, "dashboard/reports.html", "dashboard/partials/reports_body.html", context)


@staff_member_required
@require_GET
def report_download(request: HtmxHttpRequest, report_id: int, fmt: str) -> HttpResponse:
    if not apps.is_installed("monitoring"):
        raise Http404("Reports need the monitoring app.")
    from monitoring import reports as report_files
    from monitoring.selectors import report_get

    if fmt not in report_files.FORMATS:
        raise Http404(f"No format {fmt!r}.")
    report = report_get(report_id)
    response = HttpResponse(report_files.render(report.body, fmt), content_type=report_files.CONTENT_TYPES[fmt])
    response["Content-Disposition"] = f'attachment; filename="performance-report-{report.pk}.{fmt}"'
    return response


@staff_member_required
@require_GET
def configuration(request: HtmxHttpRequest) -> HttpResponse:
    rows = sel.config_rows()
    query = request.GET.get("q", "").strip().lower()
    if query:
        rows = [row for row in rows if query in row["path"].lower()]
    context = {"rows": rows, "q": query, "section": "configuration"}
    return _page(request, "dashboard/configuration.html", "dashboard/partials/config_table.html", context)
