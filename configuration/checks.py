"""System check: a bad configuration file or environment fails `manage.py check` and start-up."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error
from django.core.exceptions import ImproperlyConfigured

from configuration import layers


def configuration_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Validate defaults + file + environment; runtime rows are validated when written."""
    try:
        layers.validate_base()
    except ImproperlyConfigured as exc:
        return [
            Error(
                str(exc),
                hint="Fix the value in the file (INSTANCE_MANAGER_CONFIG) or the INSTANCE_MANAGER_* variable named.",
                id="configuration.E001",
            )
        ]
    return []
