"""The registry API: thin views that validate, call a service and render."""

from __future__ import annotations

import time

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from instances import selectors, services
from instances.api.serializers import (
    HealthCheckQuerySerializer,
    HealthCheckSerializer,
    HealthHistoryQuerySerializer,
    HealthStatusSerializer,
    HealthSummarySerializer,
    InstanceDetailSerializer,
    InstanceListQuerySerializer,
    InstanceRegisterSerializer,
    InstanceSerializer,
    InstanceUpdateSerializer,
    LoadQuerySerializer,
)
from instances.balancer.state import get_state_store
from instances.health import selectors as health_selectors
from instances.health import services as health_services
from ishchat.api import page_response, page_schema
from ishchat.views import component_health
from scaling.models import ProviderGroup

_STARTED_AT = time.time()

InstancePage = page_schema("InstancePage", InstanceSerializer(many=True))


def _actor(request: Request) -> str:
    return f"api:{getattr(request.user, 'name', 'unknown')}"


class InstanceRegisterView(APIView):
    @extend_schema(
        request=InstanceRegisterSerializer, responses={201: InstanceSerializer}, operation_id="instance_register"
    )
    def post(self, request: Request) -> Response:
        serializer = InstanceRegisterSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        instance = services.instance_register(**serializer.validated_data)
        return Response(InstanceSerializer(instance).data, status=status.HTTP_201_CREATED)


class InstanceListView(APIView):
    @extend_schema(
        parameters=[InstanceListQuerySerializer], responses={200: InstancePage}, operation_id="instance_list"
    )
    def get(self, request: Request) -> Response:
        query = InstanceListQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        filters = dict(query.validated_data)
        limit, offset = filters.pop("limit"), filters.pop("offset")
        queryset = selectors.instance_list(**filters)
        return page_response(queryset, InstanceSerializer, limit=limit, offset=offset)


class InstanceDetailView(APIView):
    @extend_schema(responses={200: InstanceDetailSerializer}, operation_id="instance_retrieve")
    def get(self, request: Request, instance_id: str) -> Response:
        instance = selectors.instance_get(instance_id)
        key = str(instance.instance_id)
        instance.breaker_view = selectors.breaker_view(get_state_store().breaker_states([key])[key], time.time())  # type: ignore[attr-defined]
        return Response(InstanceDetailSerializer(instance).data)

    @extend_schema(
        request=InstanceUpdateSerializer, responses={200: InstanceSerializer}, operation_id="instance_update"
    )
    def patch(self, request: Request, instance_id: str) -> Response:
        instance = selectors.instance_get(instance_id)
        serializer = InstanceUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.instance_update(instance=instance, changes=dict(serializer.validated_data), actor=_actor(request))
        return Response(InstanceSerializer(selectors.instance_get(instance_id)).data)

    @extend_schema(responses={204: None}, operation_id="instance_deregister")
    def delete(self, request: Request, instance_id: str) -> Response:
        instance = selectors.instance_get(instance_id)
        services.instance_deregister(instance=instance, actor=_actor(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class InstanceLoadView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("current_load", int, required=True, description="In-flight requests now.")],
        request=None,
        responses={200: InstanceSerializer},
        operation_id="instance_set_load",
    )
    def put(self, request: Request, instance_id: str) -> Response:
        instance = selectors.instance_get(instance_id)
        query = LoadQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        services.instance_set_load(instance=instance, current_load=query.validated_data["current_load"])
        return Response(InstanceSerializer(instance).data)


class SystemStatusView(APIView):
    @extend_schema(
        responses={
            200: inline_serializer(
                name="SystemStatus",
                fields={
                    "status": serializers.CharField(),
                    "version": serializers.CharField(),
                    "uptime_seconds": serializers.FloatField(),
                    "total_instances": serializers.IntegerField(),
                    "instances_by_status": serializers.DictField(child=serializers.IntegerField()),
                    "instances_by_provider": serializers.DictField(),
                    "total_load": serializers.IntegerField(),
                    "total_capacity": serializers.IntegerField(),
                    "utilization": serializers.FloatField(),
                    "average_health_score": serializers.FloatField(allow_null=True),
                    "total_groups": serializers.IntegerField(),
                    "components": serializers.DictField(),
                },
            )
        },
        operation_id="system_status",
    )
    def get(self, request: Request) -> Response:
        components = component_health()
        degraded = any(result["status"] != "up" for result in components.values())
        body = {
            "status": "degraded" if degraded else "operational",
            "version": "1.0.0",
            "uptime_seconds": round(time.time() - _STARTED_AT, 1),
            **selectors.system_status(),
            "total_groups": ProviderGroup.objects.count(),
            "components": components,
        }
        return Response(body)


class InstanceHealthCheckView(APIView):
    @extend_schema(
        parameters=[HealthCheckQuerySerializer],
        request=None,
        responses={200: HealthCheckSerializer},
        operation_id="instance_health_check",
    )
    def post(self, request: Request, instance_id: str) -> Response:
        instance = selectors.instance_get(instance_id)
        query = HealthCheckQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        if not instance.is_active:
            raise ValidationError({"non_field_errors": ["A deregistered instance is not checked."]})
        check = health_services.health_check_instance(instance=instance, check_type=query.validated_data["check_type"])
        return Response(HealthCheckSerializer(check).data)


class InstanceHealthView(APIView):
    @extend_schema(responses={200: HealthStatusSerializer}, operation_id="instance_health")
    def get(self, request: Request, instance_id: str) -> Response:
        return Response(health_selectors.health_status(selectors.instance_get(instance_id)))


class InstanceHealthHistoryView(APIView):
    @extend_schema(
        parameters=[HealthHistoryQuerySerializer],
        responses={200: HealthCheckSerializer(many=True)},
        operation_id="instance_health_history",
    )
    def get(self, request: Request, instance_id: str) -> Response:
        instance = selectors.instance_get(instance_id)
        query = HealthHistoryQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        checks = health_selectors.health_history(instance, limit=query.validated_data["limit"])
        return Response(HealthCheckSerializer(checks, many=True).data)


class HealthSummaryView(APIView):
    @extend_schema(responses={200: HealthSummarySerializer}, operation_id="health_summary")
    def get(self, request: Request) -> Response:
        return Response(health_selectors.health_summary())
