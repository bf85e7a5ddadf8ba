"""OpenAPI shapes of /api/config, generated from the schema table so they never drift from it."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from configuration.choices import ConfigSource
from configuration.schema import json_schema

CONFIG_CHANGES_SCHEMA: dict[str, Any] = {
    **json_schema(partial=True),
    "description": (
        "A nested partial configuration. Each value set becomes a runtime override; "
        "null removes the runtime override at that path (reverting to env, file or default)."
    ),
}
CONFIG_ERRORS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        'Messages keyed by dotted path, e.g. {"load_balancer.strategy": ["must be one of [...], got \'fastest\'"]}; '
        "non_field_errors for the body as a whole, or `detail` for unparseable JSON. Nothing was written."
    ),
    "additionalProperties": True,
}


@extend_schema_field(json_schema())
class EffectiveConfigField(serializers.DictField):
    pass


class ConfigSerializer(serializers.Serializer):
    """The effective configuration (secrets redacted) and where each leaf comes from."""

    effective = EffectiveConfigField()
    sources = serializers.DictField(
        child=serializers.ChoiceField(choices=ConfigSource.choices),
        help_text='Dotted leaf path -> "runtime", "env", "file" or "default".',
    )
