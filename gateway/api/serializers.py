from __future__ import annotations

from typing import Any

from rest_framework import serializers

from gateway.leases import MAX_LEASE_SECONDS, MAX_REPORTED_RETRY_AFTER
from gateway.selectors import DEFAULT_WINDOW_MINUTES, MAX_WINDOW_MINUTES
from gateway.services import LB_CONFIG_LIMITS
from instances.api.serializers import BreakerSerializer, InstanceSerializer
from instances.balancer.breaker import Phase
from instances.choices import ProviderType, Strategy
from instances.models import LoadBalancerConfig
from instances.providers.base import ErrorKind
from ishchat.api import StrictFieldsMixin, offset_field


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
    lease = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Take an in-flight lease on the selected instance for a call you make yourself; "
        "give it back with POST /api/instances/{instance_id}/release.",
    )
    lease_ttl_seconds = serializers.IntegerField(
        min_value=1,
        max_value=MAX_LEASE_SECONDS,
        required=False,
        allow_null=True,
        help_text="How long the lease counts unless released (default load_balancer.lease_ttl_seconds).",
    )


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
    lease_id = serializers.CharField(required=False, help_text="With lease: true: the lease to release.")
    lease_ttl_seconds = serializers.FloatField(required=False, help_text="With lease: true: seconds it counts.")


class ReleaseSerializer(StrictFieldsMixin, serializers.Serializer):
    """The outcome of a call made on a select-instance lease."""

    lease_id = serializers.CharField(max_length=500)
    success = serializers.BooleanField(default=True)
    error = serializers.ChoiceField(
        choices=[kind.value for kind in ErrorKind],
        required=False,
        allow_null=True,
        help_text="What failed (with success: false); default server_error.",
    )
    latency_ms = serializers.FloatField(min_value=0, max_value=86_400_000, required=False, allow_null=True)
    prompt_tokens = serializers.IntegerField(min_value=0, max_value=100_000_000, default=0)
    completion_tokens = serializers.IntegerField(min_value=0, max_value=100_000_000, default=0)
    retry_after = serializers.FloatField(
        min_value=0,
        max_value=MAX_REPORTED_RETRY_AFTER,
        required=False,
        allow_null=True,
        help_text=f"A 429's Retry-After, in seconds (at most {MAX_REPORTED_RETRY_AFTER}: it cools the instance).",
    )


class ReleaseResultSerializer(serializers.Serializer):
    released = serializers.BooleanField()
    instance_id = serializers.CharField()
    outcome = serializers.CharField(help_text="What the breaker recorded: success, failure, rate_limited, ...")
    breaker_event = serializers.CharField(allow_null=True)


class NoInstanceSerializer(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField()
    rejections = serializers.DictField(child=serializers.IntegerField())


# --- Load-balancer metrics, utilisation and breakers ---------------------------------


class WindowQuerySerializer(StrictFieldsMixin, serializers.Serializer):
    time_window_minutes = serializers.IntegerField(
        min_value=1, max_value=MAX_WINDOW_MINUTES, required=False, default=DEFAULT_WINDOW_MINUTES
    )
    provider_type = serializers.ChoiceField(choices=ProviderType.choices, required=False)
    model_name = serializers.CharField(max_length=200, required=False)


class BreakerQuerySerializer(StrictFieldsMixin, serializers.Serializer):
    phase = serializers.ChoiceField(choices=[(phase.value, phase.value) for phase in Phase], required=False)
    provider_type = serializers.ChoiceField(choices=ProviderType.choices, required=False)
    model_name = serializers.CharField(max_length=200, required=False)


class InstanceBreakerSerializer(BreakerSerializer):
    instance_id = serializers.CharField()
    instance_name = serializers.CharField()
    provider_type = serializers.CharField()
    model_name = serializers.CharField()
    status = serializers.CharField()


class BreakerListSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    by_phase = serializers.DictField(child=serializers.IntegerField(), help_text="Every listed scope, unfiltered.")
    results = InstanceBreakerSerializer(many=True)


class InstanceLoadSerializer(serializers.Serializer):
    instance_id = serializers.CharField()
    instance_name = serializers.CharField()
    provider_type = serializers.CharField()
    model_name = serializers.CharField()
    status = serializers.CharField()
    current_load = serializers.IntegerField(help_text="The same as in_flight: the one load signal (README, Load).")
    in_flight = serializers.IntegerField(
        help_text="Live leases fleet-wide: gateway requests, select-instance leases and reported load."
    )
    max_concurrent_requests = serializers.IntegerField()
    utilization = serializers.FloatField(help_text="in_flight / max_concurrent_requests.")
    latency_ms = serializers.FloatField(allow_null=True, help_text="Peak-EWMA latency estimate.")
    success_rate = serializers.FloatField(allow_null=True, help_text="Over the breaker's sliding window.")
    rate_limited = serializers.BooleanField()
    breaker = BreakerSerializer()
    activations = serializers.IntegerField(help_text="Requests this instance answered in the window.")
    successes = serializers.IntegerField()
    failures = serializers.IntegerField()
    failovers_in = serializers.IntegerField(help_text="Answered requests that failed over from another instance.")
    failed_over_from = serializers.IntegerField(help_text="Requests that left this instance for another.")


class LoadBalancerMetricsSerializer(serializers.Serializer):
    time_window_minutes = serializers.IntegerField()
    window_start = serializers.DateTimeField()
    window_end = serializers.DateTimeField()
    total_requests = serializers.IntegerField()
    successful_requests = serializers.IntegerField()
    failed_requests = serializers.IntegerField(help_text="error, timeout and rate_limited.")
    failover_requests = serializers.IntegerField()
    client_closed_requests = serializers.IntegerField()
    success_rate = serializers.FloatField(allow_null=True)
    failure_rate = serializers.FloatField(allow_null=True)
    failover_rate = serializers.FloatField(allow_null=True)
    requests_by_status = serializers.DictField(child=serializers.IntegerField())
    average_routing_ms = serializers.FloatField(allow_null=True)
    average_total_latency_ms = serializers.FloatField(allow_null=True)
    total_in_flight = serializers.IntegerField()
    total_capacity = serializers.IntegerField()
    breakers_by_phase = serializers.DictField(child=serializers.IntegerField())
    instances = InstanceLoadSerializer(many=True)


class InstanceUtilizationSerializer(serializers.Serializer):
    instance_id = serializers.CharField()
    instance_name = serializers.CharField()
    provider_type = serializers.CharField()
    model_name = serializers.CharField()
    requests = serializers.IntegerField()
    successes = serializers.IntegerField()
    failures = serializers.IntegerField(help_text="error, timeout and rate_limited.")
    success_rate = serializers.FloatField(allow_null=True)
    failure_rate = serializers.FloatField(allow_null=True)
    average_ms = serializers.FloatField(allow_null=True)
    p50_ms = serializers.FloatField(allow_null=True)
    p95_ms = serializers.FloatField(allow_null=True)
    p99_ms = serializers.FloatField(allow_null=True)
    latency_samples = serializers.IntegerField(help_text="Latencies the percentiles were computed from.")


class LoadBalancerUtilizationSerializer(serializers.Serializer):
    time_window_minutes = serializers.IntegerField()
    window_start = serializers.DateTimeField()
    window_end = serializers.DateTimeField()
    percentiles = serializers.ChoiceField(
        choices=[("exact", "exact"), ("sampled", "sampled")],
        help_text="exact: every latency in the window (PostgreSQL); sampled: each instance's most recent "
        "latency_sample_cap latencies.",
    )
    latency_sample_cap = serializers.IntegerField(allow_null=True)
    instances = InstanceUtilizationSerializer(many=True)


# --- LoadBalancerConfig --------------------------------------------------------------


def _int(name: str, **kwargs: Any) -> serializers.IntegerField:
    low, high = LB_CONFIG_LIMITS[name]
    return serializers.IntegerField(min_value=int(low), max_value=int(high), required=False, **kwargs)


def _float(name: str) -> serializers.FloatField:
    low, high = LB_CONFIG_LIMITS[name]
    return serializers.FloatField(min_value=low, max_value=high, required=False)


class LoadBalancerConfigWriteSerializer(StrictFieldsMixin, serializers.Serializer):
    """POST takes provider_type and any of the others (defaults as the model's); PATCH any subset."""

    provider_type = serializers.ChoiceField(choices=ProviderType.choices)
    model_name = serializers.CharField(max_length=200, required=False, allow_blank=True, help_text="Blank: all models.")
    strategy = serializers.ChoiceField(choices=Strategy.choices, required=False)
    health_check_interval = _int("health_check_interval")
    healthy_threshold = _int("healthy_threshold")
    unhealthy_threshold = _int("unhealthy_threshold")
    min_health_score = _float("min_health_score")
    failover_enabled = serializers.BooleanField(required=False)
    max_failover_attempts = _int("max_failover_attempts")
    breaker_failure_threshold = _int("breaker_failure_threshold")
    breaker_failure_rate = _float("breaker_failure_rate")
    breaker_min_calls = _int("breaker_min_calls")
    breaker_open_seconds = _int("breaker_open_seconds")
    breaker_max_open_seconds = _int("breaker_max_open_seconds", help_text="At least breaker_open_seconds.")
    breaker_half_open_probes = _int("breaker_half_open_probes")
    max_ejection_share = _float("max_ejection_share")
    session_affinity = serializers.BooleanField(required=False)
    session_ttl_seconds = _int("session_ttl_seconds")
    is_active = serializers.BooleanField(required=False)


class LoadBalancerConfigUpdateSerializer(LoadBalancerConfigWriteSerializer):
    provider_type = serializers.ChoiceField(choices=ProviderType.choices, required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["partial"] = True
        super().__init__(*args, **kwargs)


class LoadBalancerConfigSerializer(serializers.ModelSerializer):
    class Meta:
        model = LoadBalancerConfig
        fields = [
            "id",
            "provider_type",
            "model_name",
            "strategy",
            "health_check_interval",
            "healthy_threshold",
            "unhealthy_threshold",
            "min_health_score",
            "failover_enabled",
            "max_failover_attempts",
            "breaker_failure_threshold",
            "breaker_failure_rate",
            "breaker_min_calls",
            "breaker_open_seconds",
            "breaker_max_open_seconds",
            "breaker_half_open_probes",
            "max_ejection_share",
            "session_affinity",
            "session_ttl_seconds",
            "is_active",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class LoadBalancerConfigListQuerySerializer(StrictFieldsMixin, serializers.Serializer):
    provider_type = serializers.ChoiceField(choices=ProviderType.choices, required=False)
    limit = serializers.IntegerField(min_value=1, max_value=1000, required=False, default=100)
    offset = offset_field()
