from django.db import models


class ProviderType(models.TextChoices):
    ZAI = "zai", "ZAI / GLM"
    OPENAI = "openai", "OpenAI"
    ANTHROPIC = "anthropic", "Anthropic"
    PERPLEXITY = "perplexity", "Perplexity"
    OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible (vLLM, Ollama, TGI)"


class InstanceStatus(models.TextChoices):
    STARTING = "starting", "Starting"
    HEALTHY = "healthy", "Healthy"
    DEGRADED = "degraded", "Degraded"
    UNHEALTHY = "unhealthy", "Unhealthy"
    STANDBY = "standby", "Standby"
    DRAINING = "draining", "Draining"
    MAINTENANCE = "maintenance", "Maintenance"
    STOPPED = "stopped", "Stopped"


# Statuses an operator may set (API, admin, dashboard); healthy/degraded/unhealthy come from health checks.
OPERATOR_STATUSES = frozenset(
    {
        InstanceStatus.STARTING,
        InstanceStatus.STANDBY,
        InstanceStatus.DRAINING,
        InstanceStatus.MAINTENANCE,
        InstanceStatus.STOPPED,
    }
)
OPERATOR_STATUS_CHOICES = [(value, label) for value, label in InstanceStatus.choices if value in OPERATOR_STATUSES]

# Statuses an operator parks an instance in; health checks leave them alone.
PARKED_STATUSES = frozenset({InstanceStatus.STANDBY, InstanceStatus.MAINTENANCE, InstanceStatus.STOPPED})


class CheckType(models.TextChoices):
    BASIC = "basic", "Basic"
    LATENCY = "latency", "Latency"
    LOAD = "load", "Load"
    COMPREHENSIVE = "comprehensive", "Comprehensive"


class CheckStatus(models.TextChoices):
    HEALTHY = "healthy", "Healthy"
    DEGRADED = "degraded", "Degraded"
    UNHEALTHY = "unhealthy", "Unhealthy"
    UNKNOWN = "unknown", "Unknown"


class RequestStatus(models.TextChoices):
    SUCCESS = "success", "Success"
    ERROR = "error", "Error"
    TIMEOUT = "timeout", "Timeout"
    RATE_LIMITED = "rate_limited", "Rate limited"
    CLIENT_CLOSED = "client_closed", "Client closed"


class Strategy(models.TextChoices):
    ROUND_ROBIN = "round_robin", "Round robin"
    WEIGHTED = "weighted", "Weighted"
    LEAST_CONNECTIONS = "least_connections", "Least connections"
    LEAST_RESPONSE_TIME = "least_response_time", "Least response time"
    RANDOM = "random", "Random"
    HEALTH_BASED = "health_based", "Health based"
    POWER_OF_TWO = "power_of_two", "Power of two choices"
