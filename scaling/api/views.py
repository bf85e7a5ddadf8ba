"""The auto-scaling API: thin views that validate, call a service or selector and render."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ishchat.api import page_response, page_schema
from scaling import selectors, services
from scaling.api.serializers import (
    AutoScalingSerializer,
    EvaluateQuerySerializer,
    EvaluationSerializer,
    EventListQuerySerializer,
    GroupCreateSerializer,
    GroupListQuerySerializer,
    GroupUpdateSerializer,
    MetricsQuerySerializer,
    ProviderGroupSerializer,
    ScaleSerializer,
    ScalingEventSerializer,
    ScalingMetricsSerializer,
    decision_without_inputs,
)


def _actor(request: Request) -> str:
    return f"api:{getattr(request.user, 'name', 'unknown')}"


def _group_body(group_id: int) -> dict[str, Any]:
    return ProviderGroupSerializer(selectors.group_get(group_id)).data


class GroupListView(APIView):
    @extend_schema(
        parameters=[GroupListQuerySerializer],
        responses={200: page_schema("ProviderGroupPage", ProviderGroupSerializer(many=True))},
        operation_id="group_list",
        description="Provider groups by name, with instance counts and the last decision.",
    )
    def get(self, request: Request) -> Response:
        query = GroupListQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        limit, offset = query.validated_data["limit"], query.validated_data["offset"]
        queryset = selectors.group_list()
        return page_response(queryset, ProviderGroupSerializer, limit=limit, offset=offset)

    @extend_schema(
        request=GroupCreateSerializer,
        responses={201: ProviderGroupSerializer},
        operation_id="group_create",
        description=(
            "The seed's body ({group_name, provider_type, min_instances, max_instances, auto_scaling_enabled, "
            "scale_up_threshold}) plus any policy field. Policy fields not given take the configured "
            "auto_scaling.* defaults. A policy the engine rejects is 400 and nothing is created; a taken "
            "group_name is 409."
        ),
    )
    def post(self, request: Request) -> Response:
        serializer = GroupCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        group = services.group_create(**serializer.validated_data)
        return Response(_group_body(group.pk), status=status.HTTP_201_CREATED)


class GroupDetailView(APIView):
    @extend_schema(responses={200: ProviderGroupSerializer}, operation_id="group_retrieve")
    def get(self, request: Request, group_id: int) -> Response:
        return Response(_group_body(group_id))

    @extend_schema(
        request=GroupUpdateSerializer,
        responses={200: ProviderGroupSerializer},
        operation_id="group_update",
        description="Change any field; the resulting policy must be valid or nothing changes (400).",
    )
    def patch(self, request: Request, group_id: int) -> Response:
        group = selectors.group_get(group_id)
        serializer = GroupUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.group_update(group=group, changes=dict(serializer.validated_data))
        return Response(_group_body(group_id))

    @extend_schema(
        responses={204: None},
        operation_id="group_delete",
        description="Deletes the group and its scaling events; its instances stay registered, outside any group.",
    )
    def delete(self, request: Request, group_id: int) -> Response:
        services.group_delete(group=selectors.group_get(group_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class GroupAutoScalingView(APIView):
    @extend_schema(
        request=AutoScalingSerializer,
        responses={200: ProviderGroupSerializer},
        operation_id="group_configure_autoscaling",
        description=(
            "Configure auto-scaling: the seed's body ({enabled, min_instances, max_instances, scale_up_threshold, "
            "scale_down_threshold}) plus cooldowns, stabilization, target utilisation, trigger targets, step "
            "limits, prediction, schedules, backend and backend settings. Fields not given keep their values. "
            "A policy the engine rejects (max < min, scale_up_threshold <= scale_down_threshold, thresholds "
            "outside (0, 1], negative cooldowns, bad schedules, bad backend settings) is 400 and changes nothing."
        ),
    )
    def post(self, request: Request, group_id: int) -> Response:
        group = selectors.group_get(group_id)
        serializer = AutoScalingSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.group_configure_autoscaling(group=group, **serializer.validated_data)
        return Response(_group_body(group_id))


class GroupEvaluateView(APIView):
    @extend_schema(
        parameters=[EvaluateQuerySerializer],
        request=None,
        responses={200: EvaluationSerializer},
        operation_id="group_evaluate",
        description=(
            "Evaluate the group now and return the decision with its reason. Without dry_run an action is "
            "recorded as a scaling event and applied in the background (only for groups with auto-scaling "
            "enabled); 409 while another evaluation of the group runs."
        ),
    )
    def post(self, request: Request, group_id: int) -> Response:
        group = selectors.group_get(group_id)
        query = EvaluateQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        result = services.group_evaluate(group_id=group.pk, dry_run=query.validated_data["dry_run"])
        return Response(EvaluationSerializer(decision_without_inputs(result)).data)


class GroupScaleView(APIView):
    @extend_schema(
        request=ScaleSerializer,
        responses={200: EvaluationSerializer},
        operation_id="group_scale",
        description=(
            "Scale by hand to desired_instances (within min/max, raised by active schedules) and pause automatic "
            "scaling for pause_seconds. A pending automatic action is superseded; 409 while one is being applied."
        ),
    )
    def post(self, request: Request, group_id: int) -> Response:
        group = selectors.group_get(group_id)
        serializer = ScaleSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = services.group_scale_manual(
            group=group,
            desired=data["desired_instances"],
            reason=data["reason"],
            actor=_actor(request),
            pause_seconds=data.get("pause_seconds"),
        )
        return Response(EvaluationSerializer(decision_without_inputs(result)).data)


class GroupEventListView(APIView):
    @extend_schema(
        parameters=[EventListQuerySerializer],
        responses={200: page_schema("ScalingEventPage", ScalingEventSerializer(many=True))},
        operation_id="group_scaling_events",
        description="The group's scaling events (actions, cooldown-skipped actions, manual ones), newest first.",
    )
    def get(self, request: Request, group_id: int) -> Response:
        group = selectors.group_get(group_id)
        query = EventListQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        filters = dict(query.validated_data)
        limit, offset = filters.pop("limit"), filters.pop("offset")
        queryset = selectors.scaling_event_list(group_id=group.pk, **filters)
        return page_response(queryset, ScalingEventSerializer, limit=limit, offset=offset)


class ScalingMetricsView(APIView):
    @extend_schema(
        parameters=[MetricsQuerySerializer],
        responses={200: ScalingMetricsSerializer},
        operation_id="autoscaling_metrics",
        description=(
            "Scaling events of the last `hours` by direction, status and hour; the success rate of the actions "
            "that finished; the groups with auto-scaling enabled."
        ),
    )
    def get(self, request: Request) -> Response:
        query = MetricsQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        metrics = selectors.scaling_metrics(now=timezone.now(), hours=query.validated_data["hours"])
        return Response(ScalingMetricsSerializer(metrics).data)
