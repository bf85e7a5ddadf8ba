from django.db import models


class ConfigSource(models.TextChoices):
    """Where an effective value comes from, highest precedence first."""

    RUNTIME = "runtime", "Runtime (database)"
    ENV = "env", "Environment"
    FILE = "file", "Configuration file"
    DEFAULT = "default", "Built-in default"
