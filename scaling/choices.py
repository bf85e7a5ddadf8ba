from django.db import models


class ScalingDirection(models.TextChoices):
    UP = "up", "Scale up"
    DOWN = "down", "Scale down"
    NONE = "none", "No change"


class ScalingTrigger(models.TextChoices):
    UTILIZATION = "utilization", "Utilisation"
    RESPONSE_TIME = "response_time", "p95 response time"
    ERROR_RATE = "error_rate", "Error rate"
    QUEUE_LENGTH = "queue_length", "Queue length"
    REQUEST_RATE = "request_rate", "Request rate"
    PREDICTIVE = "predictive", "Predicted load"
    SCHEDULE = "schedule", "Schedule"
    MANUAL = "manual", "Manual"
    BOUNDS = "bounds", "Min/max bounds"


class ScalingEventStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    IN_PROGRESS = "in_progress", "In progress"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped (cooldown)"
    CANCELLED = "cancelled", "Cancelled (superseded)"


# An event in one of these is still to be carried out; a group has at most one.
OPEN_EVENT_STATUSES = (ScalingEventStatus.PENDING, ScalingEventStatus.IN_PROGRESS)


class ScalingBackend(models.TextChoices):
    POOL = "pool", "Standby pool"
    WEBHOOK = "webhook", "Webhook"
    KUBERNETES = "kubernetes", "Kubernetes Deployment"


class PredictiveMode(models.TextChoices):
    OFF = "off", "Off"
    ON = "on", "On"
    FORECAST_ONLY = "forecast_only", "Forecast only"


class Seasonality(models.TextChoices):
    ADDITIVE = "additive", "Additive (the swing is the same at any level)"
    MULTIPLICATIVE = "multiplicative", "Multiplicative (the swing scales with the level)"
