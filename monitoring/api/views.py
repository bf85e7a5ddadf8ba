"""Monitoring API: on-demand retention and the stored performance reports."""

from __future__ import annotations

from collections.abc import Iterable

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ishchat.api import page_response, page_schema
from ishchat.errors import ConflictError
from ishchat.locks import lease
from monitoring import reports, selectors, services
from monitoring.api.serializers import (
    CleanupQuerySerializer,
    CleanupResultSerializer,
    ReportDownloadQuerySerializer,
    ReportListQuerySerializer,
    ReportSerializer,
    ReportSummarySerializer,
)
from monitoring.tasks import RETENTION_LEASE, RETENTION_LEASE_SECONDS

ReportPage = page_schema("ReportPage", ReportSummarySerializer(many=True))


class CleanupView(APIView):
    @extend_schema(
        request=None,
        parameters=[CleanupQuerySerializer],
        responses={200: CleanupResultSerializer},
        operation_id="instances_cleanup",
        description=(
            "Delete request logs, health checks, per-minute metrics, processed status transitions and resolved "
            "alerts older than days_to_keep (1..3650; default monitoring.retention_days), in batches. "
            "409 while the periodic retention runs. Needs a full-access key."
        ),
    )
    def post(self, request: Request) -> Response:
        query = CleanupQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        with lease(RETENTION_LEASE, ttl_seconds=RETENTION_LEASE_SECONDS) as held:
            if not held:
                raise ConflictError("A retention run is already in progress; try again later.")
            result = services.retention_enforce(days_to_keep=query.validated_data.get("days_to_keep"))
        return Response(CleanupResultSerializer(result).data)


class ReportListView(APIView):
    @extend_schema(
        parameters=[ReportListQuerySerializer],
        responses={200: ReportPage},
        operation_id="report_list",
        description="Stored performance reports, newest first (without their bodies).",
    )
    def get(self, request: Request) -> Response:
        query = ReportListQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        limit, offset = query.validated_data["limit"], query.validated_data["offset"]
        queryset = selectors.report_list()
        return page_response(queryset, ReportSummarySerializer, limit=limit, offset=offset)


class ReportDetailView(APIView):
    @extend_schema(responses={200: ReportSerializer}, operation_id="report_retrieve")
    def get(self, request: Request, report_id: int) -> Response:
        return Response(ReportSerializer(selectors.report_get(report_id)).data)


class _JsonErrorsNegotiation(BaseContentNegotiation):
    """`?format=` names the file format here, not a DRF renderer: errors are always JSON."""

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))  # DRF passes the view's (non-empty) renderer list
        return renderer, renderer.media_type

    def select_parser(self, request: Request, parsers: Iterable[BaseParser]) -> BaseParser | None:
        return next(iter(parsers), None)


class ReportDownloadView(APIView):
    content_negotiation_class = _JsonErrorsNegotiation

    @extend_schema(
        parameters=[ReportDownloadQuerySerializer],
        responses={
            (200, "application/json"): OpenApiResponse(OpenApiTypes.OBJECT, description="The report body."),
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="Totals, providers, instances."),
            (200, "text/html"): OpenApiResponse(OpenApiTypes.STR, description="A printable page."),
        },
        operation_id="report_download",
        description="The report as a file (Content-Disposition: attachment) in json (default), csv or html.",
    )
    def get(self, request: Request, report_id: int) -> HttpResponse:
        query = ReportDownloadQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        fmt = query.validated_data["format"]
        report = selectors.report_get(report_id)
        response = HttpResponse(reports.render(report.body, fmt), content_type=reports.CONTENT_TYPES[fmt])
        response["Content-Disposition"] = f'attachment; filename="performance-report-{report.pk}.{fmt}"'
        return response
