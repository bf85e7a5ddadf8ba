"""Auto-scaling API shapes. Input serializers check types and sizes only; whether a policy makes
sense is the engine's call (ScalingPolicy.errors(), via the services), so the rules live once."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from instances.choices import ProviderType
from ishchat.api import StrictFieldsMixin, offset_field
from scaling import selectors, services
from scaling.choices import (
    PredictiveMode,
    ScalingBackend,
    ScalingDirection,
    ScalingEventStatus,
    ScalingTrigger,
    Seasonality,
)
from scaling.engine.decision import DECISION_VERSION
from scaling.models import ProviderGroup, ScalingEvent

INT_MAX = 2**31 - 1
INT_MIN = -(2**31)
# Types and sizes only; whether the values make sense is ScalingPolicy.errors()' call (services).
FLOAT_LIMIT = 1e9
MAX_SCHEDULES = 50


def _int(**options: Any) -> serializers.IntegerField:
    return serializers.IntegerField(required=False, min_value=INT_MIN, max_value=INT_MAX, **options)


def _float(**options: Any) -> serializers.FloatField:
    return serializers.FloatField(required=False, min_value=-FLOAT_LIMIT, max_value=FLOAT_LIMIT, **options)


class TriggerTargetsSerializer(StrictFieldsMixin, serializers.Serializer):
    """Targets of the triggers besides utilisation; null (or absent) switches a trigger off."""

    response_time_p95_ms = _float(allow_null=True, help_text="p95 latency target, milliseconds.")
    error_rate = _float(allow_null=True, help_text="Error-rate target, a fraction (0.05 = 5 %).")
    queue_length = _float(allow_null=True, help_text="Waiting requests per instance.")
    request_rate = _float(
        allow_null=True, help_text="Requests per minute per instance (the demand signal: scale on arrivals)."
    )


class ScheduleWindowSerializer(StrictFieldsMixin, serializers.Serializer):
    """A cron window (UTC) that raises min/max while active, e.g. business hours."""

    name = serializers.CharField(max_length=100)
    cron = serializers.CharField(max_length=200, help_text="Five fields: minute hour day month weekday (UTC).")
    duration_minutes = serializers.IntegerField(
        required=False, allow_null=True, min_value=INT_MIN, max_value=services.MAX_WINDOW_MINUTES
    )
    end = serializers.CharField(required=False, allow_null=True, max_length=5, help_text="HH:MM (UTC).")
    min_instances = _int(allow_null=True)
    max_instances = _int(allow_null=True)


class PolicyFieldsSerializer(StrictFieldsMixin, serializers.Serializer):
    """The policy, backend and backend settings; every field optional."""

    min_instances = _int()
    max_instances = _int()
    target_utilization = _float(help_text="Utilisation the fleet is sized for, in (0, 1].")
    scale_up_threshold = _float(help_text="At or above: at least one more instance, in (0, 1].")
    scale_down_threshold = _float(help_text="Below it the fleet may shrink; < scale_up_threshold.")
    tolerance = _float(help_text="HPA tolerance: no change while |metric / target - 1| <= tolerance.")
    scale_up_cooldown = _int(help_text="Seconds after a scale-up before the next one.")
    scale_down_cooldown = _int(help_text="Seconds after any scaling before a scale-down.")
    scale_down_stabilization_seconds = _int(help_text="Scale down to the highest recommendation of this window.")
    scale_up_limit_percent = _float(help_text="One step adds at most max(current x percent, instances).")
    scale_up_limit_instances = _int()
    scale_down_limit_percent = _float(help_text="One step removes at most current x percent (at least 1).")
    triggers = TriggerTargetsSerializer(required=False)
    predictive_mode = serializers.ChoiceField(choices=PredictiveMode.choices, required=False)
    instance_capacity_rpm = _float(allow_null=True, help_text="Requests/minute one instance serves at 100 %.")
    forecast_horizon_seconds = serializers.IntegerField(
        required=False, min_value=INT_MIN, max_value=services.MAX_FORECAST_HORIZON_SECONDS
    )
    forecast_season_minutes = _int(help_text="The traffic's season, minutes (1440: a day).")
    forecast_seasonality = serializers.ChoiceField(choices=Seasonality.choices, required=False)
    # many=True passes max_length on to the ListSerializer; the stub's BaseSerializer.__init__ omits it.
    schedules = ScheduleWindowSerializer(many=True, required=False, max_length=MAX_SCHEDULES)  # type: ignore[call-arg]
    backend = serializers.ChoiceField(choices=ScalingBackend.choices, required=False)
    backend_settings = serializers.DictField(
        required=False,
        help_text=(
            "pool: drain_timeout_seconds. webhook: url, secret (write-only), timeout_seconds, "
            "startup_grace_seconds. kubernetes: namespace, deployment, in_cluster or kubeconfig, context, "
            "timeout_seconds, startup_grace_seconds."
        ),
    )


class GroupCreateSerializer(PolicyFieldsSerializer):
    group_name = serializers.CharField(max_length=200)
    provider_type = serializers.ChoiceField(choices=ProviderType.choices)
    model_name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    description = serializers.CharField(max_length=5000, required=False, allow_blank=True)
    auto_scaling_enabled = serializers.BooleanField(required=False)


class GroupUpdateSerializer(GroupCreateSerializer):
    group_name = serializers.CharField(max_length=200, required=False)
    provider_type = serializers.ChoiceField(choices=ProviderType.choices, required=False)


class AutoScalingSerializer(PolicyFieldsSerializer):
    """The seed's body ({enabled, min_instances, max_instances, scale_up_threshold, scale_down_threshold})
    plus the rest of the policy; fields not given keep their values."""

    enabled = serializers.BooleanField(required=False)


class ScaleSerializer(StrictFieldsMixin, serializers.Serializer):
    desired_instances = serializers.IntegerField(min_value=0, max_value=INT_MAX)
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    pause_seconds = serializers.IntegerField(
        min_value=0,
        max_value=7 * 86_400,
        required=False,
        help_text="Pause automatic scaling this long (default auto_scaling.manual_pause_seconds, 900 s); 0: none.",
    )


class EvaluateQuerySerializer(StrictFieldsMixin, serializers.Serializer):
    dry_run = serializers.BooleanField(required=False, default=False, help_text="Decide without acting.")


class EventListQuerySerializer(StrictFieldsMixin, serializers.Serializer):
    status = serializers.ChoiceField(choices=ScalingEventStatus.choices, required=False)
    direction = serializers.ChoiceField(choices=ScalingDirection.choices, required=False)
    limit = serializers.IntegerField(min_value=1, max_value=1000, required=False, default=100)
    offset = offset_field()


class GroupListQuerySerializer(StrictFieldsMixin, serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=1000, required=False, default=100)
    offset = offset_field()


class MetricsQuerySerializer(StrictFieldsMixin, serializers.Serializer):
    hours = serializers.IntegerField(min_value=1, max_value=24 * 31, required=False, default=24)


# --- output -------------------------------------------------------------------------------------


class DecisionRecordSerializer(serializers.Serializer):
    """A decision as stored (scaling.engine.Decision.to_dict without its inputs) and what was done."""

    outcome = serializers.CharField(
        help_text="acted, skipped_cooldown, paused, waiting, disabled, no_change, dry_run or manual."
    )
    event_id = serializers.IntegerField(allow_null=True, help_text="The ScalingEvent recorded or waited for.")
    version = serializers.IntegerField()
    evaluated_at = serializers.DateTimeField()
    direction = serializers.ChoiceField(choices=ScalingDirection.choices)
    current = serializers.IntegerField(help_text="active + starting")
    active = serializers.IntegerField()
    starting = serializers.IntegerField()
    desired = serializers.IntegerField()
    trigger = serializers.ChoiceField(choices=ScalingTrigger.choices, allow_null=True)
    reason = serializers.CharField()
    would_act = serializers.BooleanField()
    skipped_by_cooldown = serializers.BooleanField()
    paused = serializers.BooleanField()
    min_instances = serializers.IntegerField()
    max_instances = serializers.IntegerField()
    recommendation = serializers.IntegerField()
    threshold = serializers.FloatField(allow_null=True)
    clamps = serializers.ListField(child=serializers.CharField())
    proposals = serializers.ListField(child=serializers.DictField(), help_text="Each trigger's proposal.")
    metric_values = serializers.DictField(child=serializers.FloatField())
    schedules_active = serializers.ListField(child=serializers.CharField())
    recommendations = serializers.ListField(child=serializers.ListField(), help_text="[time, count] pairs.")
    forecast = serializers.DictField(allow_null=True)


class EvaluationSerializer(DecisionRecordSerializer):
    group_id = serializers.IntegerField()
    group_name = serializers.CharField()
    dry_run = serializers.BooleanField()
    paused_until = serializers.DateTimeField(allow_null=True)


def decision_without_inputs(record: dict[str, Any] | None) -> dict[str, Any] | None:
    if not record:
        return None
    return {key: value for key, value in record.items() if key != "inputs"}


class ProviderGroupSerializer(serializers.ModelSerializer):
    """A group with its policy, backend (secrets never shown), instance counts and last decision."""

    triggers = TriggerTargetsSerializer(read_only=True)
    schedules = ScheduleWindowSerializer(many=True, read_only=True)
    backend_settings = serializers.SerializerMethodField()
    last_decision = serializers.SerializerMethodField()
    policy_warnings = serializers.SerializerMethodField()
    total_instances = serializers.IntegerField(read_only=True, help_text="Registered instances in the group.")
    active_instances = serializers.IntegerField(read_only=True, help_text="Serving: healthy or degraded.")
    starting_instances = serializers.IntegerField(read_only=True)
    standby_instances = serializers.IntegerField(read_only=True)
    draining_instances = serializers.IntegerField(read_only=True)
    unhealthy_instances = serializers.IntegerField(read_only=True)

    class Meta:
        model = ProviderGroup
        fields = [
            "id",
            "group_name",
            "provider_type",
            "model_name",
            "description",
            "min_instances",
            "max_instances",
            "desired_instances",
            "total_instances",
            *selectors.MEMBER_COUNTS,
            "auto_scaling_enabled",
            *(name for name in services.POLICY_FIELDS if name not in ("min_instances", "max_instances")),
            "policy_warnings",
            "backend",
            "backend_settings",
            "paused_until",
            "last_decision",
            "last_evaluated_at",
            "last_scale_up_at",
            "last_scale_down_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.DictField(help_text="Backend settings; secrets show as secret_set."))
    def get_backend_settings(self, group: ProviderGroup) -> dict[str, Any]:
        return services.public_backend_settings(group)

    @extend_schema_field(
        serializers.ListField(
            child=serializers.CharField(), help_text="Valid but probably unintended settings (nothing stops them)."
        )
    )
    def get_policy_warnings(self, group: ProviderGroup) -> list[str]:
        return services.group_policy_warnings(group)

    @extend_schema_field(DecisionRecordSerializer(allow_null=True))
    def get_last_decision(self, group: ProviderGroup) -> dict[str, Any] | None:
        record = decision_without_inputs(group.last_decision)
        if not record or record.get("version") != DECISION_VERSION or "outcome" not in record:
            return None  # never evaluated (or stored by another version of the engine: see the admin)
        return DecisionRecordSerializer(record).data


class ScalingEventSerializer(serializers.ModelSerializer):
    group_id = serializers.IntegerField(read_only=True)
    metric_values = serializers.DictField(child=serializers.FloatField(), read_only=True)
    result = serializers.DictField(read_only=True, help_text="What the backend did.")

    class Meta:
        model = ScalingEvent
        fields = [
            "id",
            "group_id",
            "direction",
            "trigger",
            "status",
            "reason",
            "metric_values",
            "threshold",
            "old_count",
            "new_count",
            "backend",
            "error",
            "result",
            "actor",
            "attempts",
            "next_attempt_at",
            "created_at",
            "started_at",
            "completed_at",
        ]
        read_only_fields = fields


class ManagedGroupSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    group_name = serializers.CharField()
    backend = serializers.ChoiceField(choices=ScalingBackend.choices)
    min_instances = serializers.IntegerField()
    max_instances = serializers.IntegerField()
    desired_instances = serializers.IntegerField()
    active_instances = serializers.IntegerField()
    standby_instances = serializers.IntegerField()
    paused_until = serializers.DateTimeField(allow_null=True)
    last_evaluated_at = serializers.DateTimeField(allow_null=True)
    last_direction = serializers.CharField(allow_null=True)


class HourSerializer(serializers.Serializer):
    hour = serializers.DateTimeField()
    up = serializers.IntegerField()
    down = serializers.IntegerField()
    skipped = serializers.IntegerField()
    failed = serializers.IntegerField()


class ScalingMetricsSerializer(serializers.Serializer):
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    hours = serializers.IntegerField()
    groups = serializers.DictField(child=serializers.IntegerField(), help_text="total, auto_scaling_enabled, paused")
    events = serializers.DictField(
        child=serializers.DictField(child=serializers.IntegerField()), help_text="by_direction, by_status"
    )
    success_rate = serializers.FloatField(
        allow_null=True, help_text="completed / (completed + failed) actions in the period."
    )
    by_hour = HourSerializer(many=True)
    managed_groups = ManagedGroupSerializer(many=True)
