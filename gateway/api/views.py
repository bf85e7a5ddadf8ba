"""The balancer's API: POST /api/instances/select-instance (which instance would
take this request, and why), the load-balancer metrics, utilisation and
breaker reads, and the LoadBalancerConfig rows."""

from __future__ import annotations

import time

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from gateway import selectors, services
from gateway.api.serializers import (
    BreakerListSerializer,
    BreakerQuerySerializer,
    LoadBalancerConfigListQuerySerializer,
    LoadBalancerConfigSerializer,
    LoadBalancerConfigUpdateSerializer,
    LoadBalancerConfigWriteSerializer,
    LoadBalancerMetricsSerializer,
    LoadBalancerUtilizationSerializer,
    NoInstanceSerializer,
    ReleaseResultSerializer,
    ReleaseSerializer,
    SelectInstanceSerializer,
    SelectionResultSerializer,
    WindowQuerySerializer,
)
from gateway.leases import lease_release, lease_take
from gateway.routing import NoEligibleInstance, Route, Router
from instances.api.serializers import InstanceSerializer
from instances.balancer.candidates import Candidate
from instances.balancer.strategies import UnknownStrategy
from instances.models import AIInstance
from instances.selectors import instance_get
from ishchat.api import page_response, page_schema


def _alternative(candidate: Candidate) -> dict[str, object]:
    return {
        "instance_id": candidate.instance_id,
        "instance_name": candidate.name,
        "status": candidate.status,
        "in_flight": candidate.in_flight,
        "max_concurrent_requests": candidate.max_concurrent,
        "health_score": candidate.health_score,
        "latency_ms": round(candidate.latency_ewma_ms, 2) if candidate.latency_ewma_ms is not None else None,
    }


class SelectInstanceView(APIView):
    @extend_schema(
        request=SelectInstanceSerializer,
        responses={200: SelectionResultSerializer, 503: NoInstanceSerializer},
        operation_id="instance_select",
    )
    def post(self, request: Request) -> Response:
        started = time.perf_counter()
        query = SelectInstanceSerializer(data=request.data)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        route = Route(data.get("provider_type"), data["model_name"])
        select = {
            "strategy": data.get("strategy"),
            "min_health_score": data.get("min_health_score"),
            "session_id": data.get("session_id") or request.headers.get("X-Session-ID") or None,
            "group_id": data.get("group_id"),
            "region": data.get("region"),
            "exclude": frozenset(str(value) for value in data.get("exclude", [])),
        }
        leased = None
        try:
            if data["lease"]:
                leased = lease_take(Router(), route, ttl_seconds=data.get("lease_ttl_seconds"), **select)
                routed = leased.routed
            else:
                routed = Router().select(route, **select)
        except UnknownStrategy as exc:
            raise ValidationError({"strategy": [str(exc)]}) from exc
        except NoEligibleInstance as exc:
            return Response(
                {"detail": exc.message, "code": exc.code, "rejections": dict(exc.rejections.counts)},
                status=status.HTTP_503_SERVICE_UNAVAILABLE,
            )
        elapsed_ms = (time.perf_counter() - started) * 1000
        selection = routed.selection
        instance = AIInstance.objects.select_related("group").get(pk=routed.instance.pk)
        body: dict[str, object] = {
            "selected_instance": InstanceSerializer(instance).data,
            "selection_reason": selection.reason,
            "strategy": selection.strategy,
            "alternative_instances": [_alternative(c) for c in selection.alternatives],
            "eligible_instances": selection.eligible_count,
            "total_healthy_instances": selection.healthy_count,
            "load_balancing_time_ms": round(elapsed_ms, 3),
        }
        if leased is not None:
            body |= {"lease_id": leased.lease_id, "lease_ttl_seconds": leased.ttl_seconds}
        return Response(body)


class ReleaseView(APIView):
    @extend_schema(
        request=ReleaseSerializer,
        responses={200: ReleaseResultSerializer},
        operation_id="instance_release",
        description="Give back a select-instance lease with the call's outcome: it feeds the breaker, "
        "the latency estimate and the token limit as a gateway request does. 409 when the lease "
        "expired or was already released.",
    )
    def post(self, request: Request, instance_id: str) -> Response:
        instance = instance_get(instance_id)
        body = ReleaseSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return Response(lease_release(instance=instance, **body.validated_data))


def _query(serializer_class: type[serializers.Serializer], request: Request) -> dict:
    query = serializer_class(data=request.query_params.dict())
    query.is_valid(raise_exception=True)
    return dict(query.validated_data)


class LoadBalancerMetricsView(APIView):
    @extend_schema(
        parameters=[WindowQuerySerializer],
        responses={200: LoadBalancerMetricsSerializer},
        operation_id="load_balancer_metrics",
    )
    def get(self, request: Request) -> Response:
        query = _query(WindowQuerySerializer, request)
        metrics = selectors.lb_metrics(
            window_minutes=query["time_window_minutes"],
            provider_type=query.get("provider_type"),
            model_name=query.get("model_name"),
        )
        return Response(LoadBalancerMetricsSerializer(metrics).data)


class LoadBalancerUtilizationView(APIView):
    @extend_schema(
        parameters=[WindowQuerySerializer],
        responses={200: LoadBalancerUtilizationSerializer},
        operation_id="load_balancer_utilization",
    )
    def get(self, request: Request) -> Response:
        query = _query(WindowQuerySerializer, request)
        report = selectors.lb_utilization(
            window_minutes=query["time_window_minutes"],
            provider_type=query.get("provider_type"),
            model_name=query.get("model_name"),
        )
        return Response(LoadBalancerUtilizationSerializer(report).data)


class LoadBalancerBreakersView(APIView):
    @extend_schema(
        parameters=[BreakerQuerySerializer],
        responses={200: BreakerListSerializer},
        operation_id="load_balancer_breakers",
    )
    def get(self, request: Request) -> Response:
        query = _query(BreakerQuerySerializer, request)
        return Response(BreakerListSerializer(selectors.lb_breakers(**query)).data)


LoadBalancerConfigPage = page_schema("LoadBalancerConfigPage", LoadBalancerConfigSerializer(many=True))


class LoadBalancerConfigListView(APIView):
    @extend_schema(
        parameters=[LoadBalancerConfigListQuerySerializer],
        responses={200: LoadBalancerConfigPage},
        operation_id="load_balancer_config_list",
    )
    def get(self, request: Request) -> Response:
        query = _query(LoadBalancerConfigListQuerySerializer, request)
        limit, offset = query.pop("limit"), query.pop("offset")
        configs = selectors.lb_config_list(**query)
        return page_response(configs, LoadBalancerConfigSerializer, limit=limit, offset=offset)

    @extend_schema(
        request=LoadBalancerConfigWriteSerializer,
        responses={201: LoadBalancerConfigSerializer},
        operation_id="load_balancer_config_create",
    )
    def post(self, request: Request) -> Response:
        body = LoadBalancerConfigWriteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        config = services.lb_config_create(**body.validated_data)
        return Response(LoadBalancerConfigSerializer(config).data, status=status.HTTP_201_CREATED)


class LoadBalancerConfigDetailView(APIView):
    @extend_schema(responses={200: LoadBalancerConfigSerializer}, operation_id="load_balancer_config_retrieve")
    def get(self, request: Request, config_id: int) -> Response:
        return Response(LoadBalancerConfigSerializer(selectors.lb_config_get(config_id)).data)

    @extend_schema(
        request=LoadBalancerConfigUpdateSerializer,
        responses={200: LoadBalancerConfigSerializer},
        operation_id="load_balancer_config_update",
    )
    def patch(self, request: Request, config_id: int) -> Response:
        config = selectors.lb_config_get(config_id)
        body = LoadBalancerConfigUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        config = services.lb_config_update(config=config, changes=dict(body.validated_data))
        return Response(LoadBalancerConfigSerializer(config).data)

    @extend_schema(responses={204: None}, operation_id="load_balancer_config_delete")
    def delete(self, request: Request, config_id: int) -> Response:
        services.lb_config_delete(config=selectors.lb_config_get(config_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
