from __future__ import annotations

import json
from typing import Any

from rest_framework import serializers

from instances.choices import InstanceStatus, ProviderType
from instances.models import AIInstance
from instances.services import OPERATOR_STATUSES, instance_api_key_source
from ishchat.api import StrictFieldsMixin

MAX_METADATA_BYTES = 16 * 1024


def _validate_tags(value: list[str]) -> list[str]:
    if len(value) > 50:
        raise serializers.ValidationError("At most 50 tags.")
    return value


def _validate_metadata(value: dict[str, Any]) -> dict[str, Any]:
    if len(json.dumps(value)) > MAX_METADATA_BYTES:
        raise serializers.ValidationError(f"At most {MAX_METADATA_BYTES} bytes of JSON.")
    return value


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
    tags = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, validators=[_validate_tags]
    )
    metadata = serializers.DictField(required=False, validators=[_validate_metadata])
    group_id = serializers.IntegerField(min_value=1, required=False, allow_null=True)


class InstanceRegisterSerializer(_InstanceFields):
    provider_type = serializers.ChoiceField(choices=ProviderType.choices)


class InstanceUpdateSerializer(_InstanceFields):
    status = serializers.ChoiceField(
        choices=[(value, label) for value, label in InstanceStatus.choices if value in OPERATOR_STATUSES],
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
    offset = serializers.IntegerField(min_value=0, required=False, default=0)


class LoadQuerySerializer(StrictFieldsMixin, serializers.Serializer):
    current_load = serializers.IntegerField(min_value=0, max_value=10_000_000)
