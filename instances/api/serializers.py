from __future__ import annotations

from typing import Any

from rest_framework import serializers

from instances.balancer.breaker import Phase
from instances.choices import OPERATOR_STATUS_CHOICES, CheckType, InstanceStatus, ProviderType
from instances.models import AIInstance, HealthCheck
from instances.services import instance_api_key_source
from ishchat.api import StrictFieldsMixin, offset_field


class _InstanceFields(StrictFieldsMixin, serializers.Serializer):
    """The writable fields, shared by register (required ones) and update (all optional)."""

    model_name = serializers.CharField(max_length=200)
    instance_name = serializers.CharField(max_length=200)
    endpoint_url = serializers.CharField(max_length=500)
    api_key = serializers.CharField(max_length=4096, required=False, allow_blank=True, trim_whitespace=True)
    region = serializers.CharField(max_length=64, required=False, allow_blank=True)
    weight = serializers.IntegerField(min_value=0, max_value=10000, required=False)
    priority = serializers.IntegerField(min_value=0, max_value=100, required=False)
    max_concurrent_requests = serializers.IntegerField(min_value=1, max_value=100000, required=False)
    requests_per_minute = serializers.IntegerField(min_value=1, required=False, allow_null=True)
    tokens_per_minute = serializers.IntegerField(min_value=1, required=False, allow_null=True)
    temperature = serializers.FloatField(min_value=0.0, max_value=2.0, required=False)
    max_tokens = serializers.IntegerField(min_value=1, max_value=10_000_000, required=False)
    timeout = serializers.FloatField(min_value=0.1, max_value=600.0, required=False)
    max_stream_seconds = serializers.IntegerField(min_value=1, max_value=86_400, required=False, allow_null=True)
    # Shape only; sizes are checked by the model's validators (instances.validators) in the service.
    tags = serializers.ListField(child=serializers.CharField(), required=False)
    metadata = serializers.DictField(required=False)
    group_id = serializers.IntegerField(min_value=1, required=False, allow_null=True)


class InstanceRegisterSerializer(_InstanceFields):
    provider_type = serializers.ChoiceField(choices=ProviderType.choices)


class InstanceUpdateSerializer(_InstanceFields):
    status = serializers.ChoiceField(
        choices=OPERATOR_STATUS_CHOICES,
        required=False,
        help_text="Operator statuses only; healthy/degraded/unhealthy come from health checks.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["partial"] = True
        super().__init__(*args, **kwargs)


class InstanceSerializer(serializers.ModelSerializer):
    """An instance as the API shows it: never the key, only whether one is set."""

    group_id = serializers.IntegerField(source="group.id", allow_null=True, read_only=True, default=None)
    group_name = serializers.CharField(source="group.group_name", allow_null=True, read_only=True, default=None)
    api_key_set = serializers.BooleanField(read_only=True)
    api_key_source = serializers.SerializerMethodField()
    utilization = serializers.FloatField(read_only=True)

    class Meta:
        model = AIInstance
        fields = [
            "instance_id",
            "provider_type",
            "model_name",
            "instance_name",
            "endpoint_url",
            "api_key_set",
            "api_key_last4",
            "api_key_source",
            "region",
            "status",
            "status_reason",
            "is_active",
            "weight",
            "priority",
            "max_concurrent_requests",
            "current_load",
            "utilization",
            "requests_per_minute",
            "tokens_per_minute",
            "temperature",
            "max_tokens",
            "timeout",
            "max_stream_seconds",
            "tags",
            "metadata",
            "group_id",
            "group_name",
            "health_score",
            "last_health_check_at",
            "created_at",
            "updated_at",
            "deregistered_at",
        ]
        read_only_fields = fields

    def get_api_key_source(self, instance: AIInstance) -> str:
        return instance_api_key_source(instance)


class InstanceListQuerySerializer(StrictFieldsMixin, serializers.Serializer):
    provider_type = serializers.ChoiceField(choices=ProviderType.choices, required=False)
    status = serializers.ChoiceField(choices=InstanceStatus.choices, required=False)
    model_name = serializers.CharField(max_length=200, required=False)
    group_id = serializers.IntegerField(min_value=1, required=False)
    region = serializers.CharField(max_length=64, required=False)
    include_inactive = serializers.BooleanField(required=False, default=False)
    limit = serializers.IntegerField(min_value=1, max_value=1000, required=False, default=100)
    offset = offset_field()


class LoadQuerySerializer(StrictFieldsMixin, serializers.Serializer):
    current_load = serializers.IntegerField(min_value=0, max_value=10_000_000)


class HealthCheckQuerySerializer(StrictFieldsMixin, serializers.Serializer):
    check_type = serializers.ChoiceField(choices=CheckType.choices, required=False, default=CheckType.BASIC)


class HealthHistoryQuerySerializer(StrictFieldsMixin, serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=1000, required=False, default=50)


class HealthCheckSerializer(serializers.ModelSerializer):
    """One check, in the seed's shape plus details and error_kind."""

    instance_id = serializers.UUIDField(source="instance.instance_id", read_only=True)

    class Meta:
        model = HealthCheck
        fields = [
            "instance_id",
            "check_type",
            "status",
            "score",
            "response_time_ms",
            "issues",
            "details",
            "error_kind",
            "checked_at",
        ]
        read_only_fields = fields


class HealthStatusSerializer(serializers.Serializer):
    instance_id = serializers.UUIDField()
    instance_name = serializers.CharField()
    status = serializers.ChoiceField(choices=InstanceStatus.choices)
    status_reason = serializers.CharField()
    score = serializers.FloatField(allow_null=True)
    issues = serializers.ListField(child=serializers.CharField())
    response_time_ms = serializers.FloatField(allow_null=True)
    last_check = serializers.DateTimeField(allow_null=True)
    last_check_type = serializers.CharField(allow_null=True)
    last_check_status = serializers.CharField(allow_null=True)
    next_check = serializers.DateTimeField(allow_null=True)
    consecutive_successes = serializers.IntegerField()
    consecutive_failures = serializers.IntegerField()


class InstanceHealthReportSerializer(serializers.Serializer):
    instance_id = serializers.UUIDField()
    instance_name = serializers.CharField()
    provider_type = serializers.CharField()
    model_name = serializers.CharField()
    status = serializers.CharField()
    score = serializers.FloatField(allow_null=True)
    response_time_ms = serializers.FloatField(allow_null=True)
    issues = serializers.ListField(child=serializers.CharField())
    last_check = serializers.DateTimeField(allow_null=True)


class HealthSummarySerializer(serializers.Serializer):
    total_instances = serializers.IntegerField()
    healthy_instances = serializers.IntegerField()
    degraded_instances = serializers.IntegerField()
    unhealthy_instances = serializers.IntegerField()
    other_instances = serializers.IntegerField()
    overall_health_percentage = serializers.FloatField()
    average_response_time = serializers.FloatField(allow_null=True)
    instances = InstanceHealthReportSerializer(many=True)


class BreakerSerializer(serializers.Serializer):
    phase = serializers.ChoiceField(choices=[(phase.value, phase.value) for phase in Phase])
    consecutive_failures = serializers.IntegerField()
    ejections = serializers.IntegerField(help_text="Consecutive ejections; each doubles the next open time.")
    open_until = serializers.DateTimeField(allow_null=True, help_text="Set while the breaker is open.")
    cooling_until = serializers.DateTimeField(allow_null=True, help_text="Set while cooling after a 429.")
    window_calls = serializers.IntegerField(help_text="Calls in the breaker's sliding window.")
    window_failures = serializers.IntegerField()


class InstanceDetailSerializer(InstanceSerializer):
    """One instance with its circuit breaker as every process sees it."""

    breaker = BreakerSerializer(source="breaker_view", read_only=True)

    class Meta(InstanceSerializer.Meta):
        fields = [*InstanceSerializer.Meta.fields, "breaker"]
        read_only_fields = fields
