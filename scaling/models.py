"""Provider groups and the scaling events that change their size."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q

from instances.choices import ProviderType
from scaling.choices import (
    OPEN_EVENT_STATUSES,
    PredictiveMode,
    ScalingBackend,
    ScalingDirection,
    ScalingEventStatus,
    ScalingTrigger,
    Seasonality,
)


class ProviderGroup(models.Model):
    group_name = models.CharField(max_length=200, unique=True)
    provider_type = models.CharField(max_length=32, choices=ProviderType.choices)
    model_name = models.CharField(max_length=200, blank=True, default="")
    description = models.TextField(blank=True, default="")
    min_instances = models.PositiveIntegerField(default=1)
    max_instances = models.PositiveIntegerField(default=10, validators=[MinValueValidator(1)])
    desired_instances = models.PositiveIntegerField(default=1)

    auto_scaling_enabled = models.BooleanField(default=False)
    scale_up_threshold = models.FloatField(default=0.8, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)])
    # Target tracking: just under target_utilization x (1 - tolerance), 0.6 x 0.9 (bench/README.md, "Auto-scaling").
    scale_down_threshold = models.FloatField(
        default=0.54, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    target_utilization = models.FloatField(default=0.6, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)])
    # 0: scale-ups are paced by the step limit and by counting starting instances as capacity.
    scale_up_cooldown = models.PositiveIntegerField(default=0, help_text="Seconds.")
    scale_down_cooldown = models.PositiveIntegerField(default=600, help_text="Seconds.")
    scale_down_stabilization_seconds = models.PositiveIntegerField(default=300)
    # HPA's tolerance and per-step limits (scaling.engine.ScalingPolicy has the same names).
    tolerance = models.FloatField(default=0.1, validators=[MinValueValidator(0.0), MaxValueValidator(0.99)])
    scale_up_limit_percent = models.FloatField(default=100.0, validators=[MinValueValidator(0.0)])
    scale_up_limit_instances = models.PositiveIntegerField(default=4)
    scale_down_limit_percent = models.FloatField(
        default=50.0, validators=[MinValueValidator(0.0), MaxValueValidator(100.0)]
    )
    # Targets of the other triggers: {"response_time_p95_ms": ..., "error_rate": ..., "queue_length": ...}
    triggers = models.JSONField(default=dict, blank=True)
    backend = models.CharField(max_length=16, choices=ScalingBackend.choices, default=ScalingBackend.POOL)
    backend_settings = models.JSONField(default=dict, blank=True)
    predictive_mode = models.CharField(max_length=16, choices=PredictiveMode.choices, default=PredictiveMode.OFF)
    instance_capacity_rpm = models.FloatField(
        null=True, blank=True, help_text="Requests/minute one instance serves at 100 %; blank: estimated."
    )
    forecast_horizon_seconds = models.PositiveIntegerField(default=180)
    forecast_season_minutes = models.PositiveIntegerField(
        default=1440, help_text="The traffic's season in minutes (1440: a day), 10 to 2160."
    )
    forecast_seasonality = models.CharField(max_length=16, choices=Seasonality.choices, default=Seasonality.ADDITIVE)
    schedules = models.JSONField(default=list, blank=True, help_text="Cron windows that raise min/max.")
    paused_until = models.DateTimeField(null=True, blank=True, help_text="Manual scaling pauses automation.")

    last_decision = models.JSONField(default=dict, blank=True)
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    last_scale_up_at = models.DateTimeField(null=True, blank=True)
    last_scale_down_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["group_name"]
        constraints = [
            models.CheckConstraint(condition=Q(max_instances__gte=F("min_instances")), name="group_max_gte_min"),
            models.CheckConstraint(condition=Q(max_instances__gte=1), name="group_max_positive"),
            models.CheckConstraint(
                condition=Q(scale_down_threshold__gt=0.0, scale_up_threshold__lte=1.0)
                & Q(scale_up_threshold__gt=F("scale_down_threshold")),
                name="group_thresholds_ordered",
            ),
            models.CheckConstraint(
                condition=Q(target_utilization__gt=0.0, target_utilization__lte=1.0), name="group_target_range"
            ),
        ]
        indexes = [
            # The periodic evaluation picks every enabled group.
            models.Index(fields=["auto_scaling_enabled"], name="group_autoscaling_idx"),
        ]

    def __str__(self) -> str:
        return self.group_name


class ScalingEvent(models.Model):
    group = models.ForeignKey(ProviderGroup, on_delete=models.CASCADE, related_name="scaling_events")
    direction = models.CharField(max_length=8, choices=ScalingDirection.choices)
    trigger = models.CharField(max_length=16, choices=ScalingTrigger.choices)
    reason = models.TextField()
    metric_values = models.JSONField(default=dict, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    old_count = models.PositiveIntegerField()
    new_count = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=ScalingEventStatus.choices, default=ScalingEventStatus.PENDING)
    backend = models.CharField(max_length=16, choices=ScalingBackend.choices, default=ScalingBackend.POOL)
    decision = models.JSONField(default=dict, blank=True, help_text="The engine's full decision, for replay.")
    error = models.TextField(blank=True, default="")
    result = models.JSONField(default=dict, blank=True, help_text="What the backend did.")
    actor = models.CharField(max_length=200, blank=True, default="", help_text="Who asked (manual scaling).")
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="A failed attempt's retry.")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One action at a time per group: a second evaluation racing the first cannot add another.
            models.UniqueConstraint(
                fields=["group"],
                condition=Q(status__in=[status.value for status in OPEN_EVENT_STATUSES]),
                name="scalingevent_one_open_per_group",
            ),
        ]
        indexes = [
            # A group's events timeline, newest first.
            models.Index(fields=["group", "-created_at"], name="scalingevent_group_time_idx"),
            # Resuming unfinished actions after a worker dies; retries that are due.
            models.Index(
                fields=["status"],
                condition=Q(status__in=["pending", "in_progress"]),
                name="scalingevent_open_idx",
            ),
            # Auto-scaling metrics by hour.
            models.Index(fields=["created_at"], name="scalingevent_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.group} {self.direction} {self.old_count}->{self.new_count} ({self.status})"
