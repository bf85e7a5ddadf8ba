"""The registry: instances, what is known of their health and traffic, and how
requests are balanced across them."""

from __future__ import annotations

import uuid

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from instances.choices import CheckStatus, CheckType, InstanceStatus, ProviderType, RequestStatus, Strategy
from instances.validators import validate_metadata, validate_tags


class AIInstance(models.Model):
    instance_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    provider_type = models.CharField(max_length=32, choices=ProviderType.choices)
    model_name = models.CharField(max_length=200)
    instance_name = models.CharField(max_length=200)
    # Not URLField: cluster-internal names such as http://vllm:8000/v1 have no TLD;
    # instances.endpoints.validate_endpoint_url checks it instead.
    endpoint_url = models.CharField(max_length=500)
    # Fernet token of the provider key (ishchat.crypto); never serialised.
    api_key_encrypted = models.TextField(blank=True, default="", editable=False)
    api_key_last4 = models.CharField(max_length=4, blank=True, default="", editable=False)
    region = models.CharField(max_length=64, blank=True, default="")

    status = models.CharField(max_length=16, choices=InstanceStatus.choices, default=InstanceStatus.STARTING)
    status_reason = models.CharField(max_length=500, blank=True, default="")
    is_active = models.BooleanField(default=True, help_text="False once deregistered: never routed, history kept.")

    weight = models.PositiveIntegerField(
        default=100, validators=[MaxValueValidator(10000)], help_text="Relative share of traffic; 0 drains."
    )
    priority = models.PositiveSmallIntegerField(
        default=0, validators=[MaxValueValidator(100)], help_text="0 is served first; higher tiers are fallbacks."
    )
    max_concurrent_requests = models.PositiveIntegerField(
        default=10, validators=[MinValueValidator(1), MaxValueValidator(100000)]
    )
    current_load = models.PositiveIntegerField(
        default=0, help_text="In-flight requests fleet-wide: the live leases, published every second (gateway/load.py)."
    )
    requests_per_minute = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)], help_text="Overrides the provider's limit."
    )
    tokens_per_minute = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)], help_text="Overrides the provider's limit."
    )

    temperature = models.FloatField(default=0.7, validators=[MinValueValidator(0.0), MaxValueValidator(2.0)])
    max_tokens = models.PositiveIntegerField(default=1000, validators=[MinValueValidator(1)])
    timeout = models.FloatField(
        default=30.0, validators=[MinValueValidator(0.1), MaxValueValidator(600.0)], help_text="Seconds."
    )
    max_stream_seconds = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(86_400)],
        help_text="Longest a streamed reply may run before the gateway cuts it; "
        "empty: load_balancer.max_stream_seconds.",
    )
    tags = models.JSONField(default=list, blank=True, validators=[validate_tags])
    metadata = models.JSONField(default=dict, blank=True, validators=[validate_metadata])
    group = models.ForeignKey(
        "scaling.ProviderGroup", null=True, blank=True, on_delete=models.SET_NULL, related_name="instances"
    )

    health_score = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    # Anti-flap counters (instances.health.status): results that were up
    # (healthy/degraded) or down in a row, and the run of identical results.
    consecutive_successes = models.PositiveIntegerField(default=0)
    consecutive_failures = models.PositiveIntegerField(default=0)
    streak_status = models.CharField(max_length=16, blank=True, default="")
    streak_length = models.PositiveIntegerField(default=0)
    last_health_check_at = models.DateTimeField(null=True, blank=True)
    last_response_time_ms = models.FloatField(null=True, blank=True)
    last_check_issues = models.JSONField(default=list, blank=True)
    next_health_check_at = models.DateTimeField(null=True, blank=True)
    # When each non-basic check type is next due: {"latency": iso, ...}.
    health_check_due = models.JSONField(default=dict, blank=True)
    # A sweep's claim: set together by one conditional UPDATE, cleared when done.
    health_claim_token = models.UUIDField(null=True, blank=True, editable=False)
    health_check_claimed_until = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deregistered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        verbose_name = "AI instance"
        constraints = [
            models.UniqueConstraint(
                fields=["instance_name"], condition=Q(is_active=True), name="unique_active_instance_name"
            ),
            models.CheckConstraint(condition=Q(weight__lte=10000), name="instance_weight_range"),
            models.CheckConstraint(condition=Q(max_concurrent_requests__gte=1), name="instance_capacity_positive"),
            models.CheckConstraint(
                condition=Q(temperature__gte=0.0, temperature__lte=2.0), name="instance_temperature_range"
            ),
            models.CheckConstraint(condition=Q(max_tokens__gte=1), name="instance_max_tokens_positive"),
            models.CheckConstraint(condition=Q(timeout__gt=0, timeout__lte=600), name="instance_timeout_range"),
            models.CheckConstraint(
                condition=Q(max_stream_seconds__isnull=True)
                | Q(max_stream_seconds__gte=1, max_stream_seconds__lte=86_400),
                name="instance_max_stream_seconds_range",
            ),
            models.CheckConstraint(
                condition=Q(health_score__isnull=True) | Q(health_score__gte=0.0, health_score__lte=1.0),
                name="instance_health_score_range",
            ),
            models.CheckConstraint(
                condition=Q(requests_per_minute__isnull=True) | Q(requests_per_minute__gte=1),
                name="instance_rpm_positive",
            ),
            models.CheckConstraint(
                condition=Q(tokens_per_minute__isnull=True) | Q(tokens_per_minute__gte=1),
                name="instance_tpm_positive",
            ),
        ]
        indexes = [
            # selectors.instance_list filters (provider_type, status) and the
            # balancer's candidate query (provider_type, model_name, status).
            models.Index(
                fields=["provider_type", "model_name", "status"],
                condition=Q(is_active=True),
                name="instance_routing_idx",
            ),
            # selectors.instance_list(status=...) and status counts in selectors.system_status.
            models.Index(fields=["status", "is_active"], name="instance_status_idx"),
            # Health sweeps (instances.health.services.health_sweep): due instances by next_health_check_at.
            models.Index(
                fields=["next_health_check_at"], condition=Q(is_active=True), name="instance_health_due_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.instance_name} ({self.provider_type}/{self.model_name})"

    @property
    def api_key_set(self) -> bool:
        return bool(self.api_key_encrypted)

    @property
    def utilization(self) -> float:
        return self.current_load / self.max_concurrent_requests if self.max_concurrent_requests else 0.0


class HealthCheck(models.Model):
    instance = models.ForeignKey(AIInstance, on_delete=models.CASCADE, related_name="health_checks")
    check_type = models.CharField(max_length=16, choices=CheckType.choices)
    status = models.CharField(max_length=16, choices=CheckStatus.choices)
    score = models.FloatField(validators=[MinValueValidator(0.0), MaxValueValidator(1.0)])
    response_time_ms = models.FloatField(null=True, blank=True)
    issues = models.JSONField(default=list, blank=True)
    details = models.JSONField(default=dict, blank=True)
    error_kind = models.CharField(max_length=32, blank=True, default="")
    checked_at = models.DateTimeField(db_index=True)  # retention deletes by age

    class Meta:
        ordering = ["-checked_at"]
        get_latest_by = "checked_at"
        constraints = [
            models.CheckConstraint(condition=Q(score__gte=0.0, score__lte=1.0), name="healthcheck_score_range"),
        ]
        indexes = [
            # Health history of one instance, newest first.
            models.Index(fields=["instance", "-checked_at"], name="healthcheck_history_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.check_type} {self.status} @ {self.checked_at:%Y-%m-%d %H:%M:%S}"


class InstanceMetrics(models.Model):
    """Per-instance, per-minute rollup of RequestLog."""

    instance = models.ForeignKey(AIInstance, on_delete=models.CASCADE, related_name="metrics")
    bucket_start = models.DateTimeField(db_index=True)  # retention and time-window reports
    period_seconds = models.PositiveIntegerField(default=60)
    request_count = models.PositiveIntegerField(default=0)
    success_count = models.PositiveIntegerField(default=0)
    failure_count = models.PositiveIntegerField(default=0)
    timeout_count = models.PositiveIntegerField(default=0)
    avg_response_ms = models.FloatField(null=True, blank=True)
    p50_response_ms = models.FloatField(null=True, blank=True)
    p95_response_ms = models.FloatField(null=True, blank=True)
    p99_response_ms = models.FloatField(null=True, blank=True)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    error_rate = models.FloatField(default=0.0)
    avg_load = models.FloatField(null=True, blank=True)
    max_load = models.PositiveIntegerField(null=True, blank=True)
    estimated_cost = models.DecimalField(max_digits=14, decimal_places=6, default=0)

    class Meta:
        ordering = ["-bucket_start"]
        verbose_name_plural = "instance metrics"
        constraints = [
            # The unique index also serves one instance's time series.
            models.UniqueConstraint(fields=["instance", "bucket_start"], name="unique_metrics_bucket"),
            models.CheckConstraint(
                condition=Q(error_rate__gte=0.0, error_rate__lte=1.0), name="metrics_error_rate_range"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.instance_id} @ {self.bucket_start:%Y-%m-%d %H:%M}"


class RequestLog(models.Model):
    request_id = models.CharField(max_length=64, db_index=True)  # lookup by x-request-id
    instance = models.ForeignKey(
        AIInstance, null=True, blank=True, on_delete=models.SET_NULL, related_name="request_logs"
    )
    original_instance = models.ForeignKey(
        AIInstance, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    provider_type = models.CharField(max_length=32, choices=ProviderType.choices, blank=True, default="")
    model_name = models.CharField(max_length=200, blank=True, default="")
    status = models.CharField(max_length=16, choices=RequestStatus.choices)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    is_stream = models.BooleanField(default=False)
    total_latency_ms = models.FloatField(null=True, blank=True)
    upstream_latency_ms = models.FloatField(null=True, blank=True)
    routing_ms = models.FloatField(null=True, blank=True, help_text="Time spent choosing instances.")
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveIntegerField(default=0)
    failover = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(default=1)
    session_id = models.CharField(max_length=200, blank=True, default="")
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(db_index=True)  # retention and rollup windows

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # Per-minute rollups and an instance's recent requests.
            models.Index(fields=["instance", "created_at"], name="requestlog_instance_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.status}"


class LoadBalancerConfig(models.Model):
    """Balancing and health thresholds per provider, optionally per model.

    A row with a blank model_name applies to every model of the provider; a
    row naming the model wins over it; the configuration file supplies what no
    row sets.
    """

    provider_type = models.CharField(max_length=32, choices=ProviderType.choices)
    model_name = models.CharField(max_length=200, blank=True, default="", help_text="Blank: all models.")
    strategy = models.CharField(max_length=32, choices=Strategy.choices, default=Strategy.HEALTH_BASED)
    health_check_interval = models.PositiveIntegerField(default=30, validators=[MinValueValidator(1)])
    healthy_threshold = models.PositiveSmallIntegerField(default=2, validators=[MinValueValidator(1)])
    unhealthy_threshold = models.PositiveSmallIntegerField(default=3, validators=[MinValueValidator(1)])
    min_health_score = models.FloatField(default=0.0, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)])
    failover_enabled = models.BooleanField(default=True)
    max_failover_attempts = models.PositiveSmallIntegerField(default=3, validators=[MaxValueValidator(10)])
    breaker_failure_threshold = models.PositiveSmallIntegerField(default=5, validators=[MinValueValidator(1)])
    breaker_failure_rate = models.FloatField(default=0.5, validators=[MinValueValidator(0.01), MaxValueValidator(1.0)])
    breaker_min_calls = models.PositiveSmallIntegerField(default=10, validators=[MinValueValidator(1)])
    breaker_open_seconds = models.PositiveIntegerField(default=30, validators=[MinValueValidator(1)])
    breaker_max_open_seconds = models.PositiveIntegerField(default=300, validators=[MinValueValidator(1)])
    breaker_half_open_probes = models.PositiveSmallIntegerField(default=3, validators=[MinValueValidator(1)])
    max_ejection_share = models.FloatField(default=0.5, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)])
    session_affinity = models.BooleanField(default=True)
    session_ttl_seconds = models.PositiveIntegerField(default=3600, validators=[MinValueValidator(1)])
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider_type", "model_name"]
        verbose_name = "load balancer config"
        constraints = [
            # Also the lookup index for the config of (provider, model).
            models.UniqueConstraint(fields=["provider_type", "model_name"], name="unique_lb_config_scope"),
            models.CheckConstraint(
                condition=Q(min_health_score__gte=0.0, min_health_score__lte=1.0), name="lb_min_health_score_range"
            ),
            models.CheckConstraint(
                condition=Q(breaker_max_open_seconds__gte=models.F("breaker_open_seconds")),
                name="lb_breaker_open_bounds",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider_type}/{self.model_name or '*'}"


class StatusTransition(models.Model):
    """A change of an instance's status, recorded when it happens and acted on
    separately (alerts, routing, scaling): detection stays apart from effects."""

    instance = models.ForeignKey(AIInstance, on_delete=models.CASCADE, related_name="transitions")
    old_status = models.CharField(max_length=16, choices=InstanceStatus.choices)
    new_status = models.CharField(max_length=16, choices=InstanceStatus.choices)
    reason = models.CharField(max_length=500)
    source = models.CharField(max_length=32, help_text="operator, api, health_check, breaker, scaling")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)  # the dashboard feed, retention
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # One instance's transition history, newest first.
            models.Index(fields=["instance", "-created_at"], name="transition_history_idx"),
            # Effects (alerts) pick up what is not processed yet.
            models.Index(fields=["id"], condition=Q(processed_at__isnull=True), name="transition_unprocessed_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.instance_id}: {self.old_status} -> {self.new_status}"


class LoadPublication(models.Model):
    """When a web process last wrote the live in-flight counts into AIInstance.current_load
    (gateway/load.py). Readers of current_load (scaling's metric window) treat the counts as
    missing when no process has published lately: a stale number is not a load."""

    publisher = models.CharField(max_length=200, unique=True, help_text="host:pid of the web process.")
    published_at = models.DateTimeField(db_index=True)
    instances = models.PositiveIntegerField(default=0, help_text="Active instances counted.")

    def __str__(self) -> str:
        return f"{self.publisher} at {self.published_at:%Y-%m-%d %H:%M:%S}"
