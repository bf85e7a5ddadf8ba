from django.db import models


class AlertRule(models.TextChoices):
    """Rule families: one alert per subject and family, whatever its severity."""

    RESPONSE_TIME = "response_time", "Response time"
    ERROR_RATE = "error_rate", "Error rate"
    INSTANCE_UNHEALTHY = "instance_unhealthy", "Instance unhealthy"
    GROUP_NO_HEALTHY = "group_no_healthy", "Group without a healthy instance"


class AlertSeverity(models.TextChoices):
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


# Higher is worse; a channel's min_severity passes alerts of that rank or more.
SEVERITY_RANK = {AlertSeverity.WARNING: 1, AlertSeverity.CRITICAL: 2}


class AlertStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


# Not resolved: deduplicated, kept up to date, resolved when the condition clears.
ACTIVE_STATUSES = (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED)


class ChannelKind(models.TextChoices):
    WEBHOOK = "webhook", "Webhook (JSON POST, Slack-compatible)"
    EMAIL = "email", "Email"
    LOG = "log", "Log (the `alerts` logger)"


class NotificationEvent(models.TextChoices):
    OPENED = "opened", "Opened"
    ESCALATED = "escalated", "Escalated to critical"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


class NotificationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
