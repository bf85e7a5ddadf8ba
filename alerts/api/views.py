"""The alerts API: list, detail, acknowledge. Thin views over selectors and services."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from alerts import selectors, services
from alerts.api.serializers import AlertListQuerySerializer, AlertSerializer
from ishchat.api import page_response, page_schema

AlertPage = page_schema("AlertPage", AlertSerializer(many=True))


def _actor(request: Request) -> str:
    return f"api:{getattr(request.user, 'name', 'unknown')}"


class AlertListView(APIView):
    @extend_schema(
        parameters=[AlertListQuerySerializer],
        responses={200: AlertPage},
        operation_id="alert_list",
        description="Alerts newest first. Filters combine with AND; an unknown filter or a bad limit/offset is 400.",
    )
    def get(self, request: Request) -> Response:
        query = AlertListQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        filters = dict(query.validated_data)
        limit, offset = filters.pop("limit"), filters.pop("offset")
        queryset = selectors.alert_list(**filters)
        return page_response(queryset, AlertSerializer, limit=limit, offset=offset)


class AlertDetailView(APIView):
    @extend_schema(responses={200: AlertSerializer}, operation_id="alert_retrieve")
    def get(self, request: Request, alert_id: int) -> Response:
        return Response(AlertSerializer(selectors.alert_get(alert_id)).data)


class AlertAcknowledgeView(APIView):
    @extend_schema(
        request=None,
        responses={200: AlertSerializer},
        operation_id="alert_acknowledge",
        description=(
            "Open -> acknowledged, recording who and when; the channels told of the alert hear of it. "
            "Acknowledging an acknowledged alert is a no-op (200, unchanged). A resolved alert answers 409. "
            "An acknowledged alert still resolves by itself when its condition clears."
        ),
    )
    def post(self, request: Request, alert_id: int) -> Response:
        alert = selectors.alert_get(alert_id)
        alert = services.alert_acknowledge(alert=alert, actor=_actor(request))
        return Response(AlertSerializer(alert).data)
