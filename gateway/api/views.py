"""POST /api/instances/select-instance: which instance would take this request, and why."""

from __future__ import annotations

import time

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from gateway.api.serializers import NoInstanceSerializer, SelectInstanceSerializer, SelectionResultSerializer
from gateway.routing import NoEligibleInstance, Route, Router
from instances.api.serializers import InstanceSerializer
from instances.balancer.candidates import Candidate
from instances.balancer.strategies import UnknownStrategy
from instances.models import AIInstance


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
        body = SelectInstanceSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        route = Route(data.get("provider_type"), data["model_name"])
        try:
            routed = Router().select(
                route,
                strategy=data.get("strategy"),
                min_health_score=data.get("min_health_score"),
                session_id=data.get("session_id") or request.headers.get("X-Session-ID") or None,
                group_id=data.get("group_id"),
                region=data.get("region"),
                exclude=frozenset(str(value) for value in data.get("exclude", [])),
            )
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
        return Response(
            {
                "selected_instance": InstanceSerializer(instance).data,
                "selection_reason": selection.reason,
                "strategy": selection.strategy,
                "alternative_instances": [_alternative(c) for c in selection.alternatives],
                "eligible_instances": selection.eligible_count,
                "total_healthy_instances": selection.healthy_count,
                "load_balancing_time_ms": round(elapsed_ms, 3),
            }
        )
