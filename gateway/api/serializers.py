from __future__ import annotations

from rest_framework import serializers

from instances.api.serializers import InstanceSerializer
from instances.choices import ProviderType, Strategy
from ishchat.api import StrictFieldsMixin


class SelectInstanceSerializer(StrictFieldsMixin, serializers.Serializer):
    """The seed's body plus session_id, group_id, region and exclude."""

    provider_type = serializers.ChoiceField(choices=ProviderType.choices, required=False, allow_null=True)
    model_name = serializers.CharField(max_length=200)
    strategy = serializers.ChoiceField(choices=Strategy.choices, required=False, allow_null=True)
    min_health_score = serializers.FloatField(min_value=0.0, max_value=1.0, required=False, allow_null=True)
    session_id = serializers.CharField(max_length=200, required=False, allow_blank=True, allow_null=True)
    group_id = serializers.IntegerField(min_value=1, required=False, allow_null=True)
    region = serializers.CharField(max_length=64, required=False, allow_blank=True, allow_null=True)
    exclude = serializers.ListField(child=serializers.UUIDField(), required=False, max_length=1000)


class AlternativeSerializer(serializers.Serializer):
    instance_id = serializers.CharField()
    instance_name = serializers.CharField()
    status = serializers.CharField()
    in_flight = serializers.IntegerField()
    max_concurrent_requests = serializers.IntegerField()
    health_score = serializers.FloatField(allow_null=True)
    latency_ms = serializers.FloatField(allow_null=True)


class SelectionResultSerializer(serializers.Serializer):
    selected_instance = InstanceSerializer()
    selection_reason = serializers.CharField()
    strategy = serializers.CharField()
    alternative_instances = AlternativeSerializer(many=True)
    eligible_instances = serializers.IntegerField()
    total_healthy_instances = serializers.IntegerField()
    load_balancing_time_ms = serializers.FloatField()


class NoInstanceSerializer(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField()
    rejections = serializers.DictField(child=serializers.IntegerField())
