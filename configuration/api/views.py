"""GET/PATCH /api/config: thin; configuration.selectors reads and configuration.services writes."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import APIPrincipal
from configuration.api.serializers import CONFIG_CHANGES_SCHEMA, CONFIG_ERRORS_SCHEMA, ConfigSerializer
from configuration.redaction import redact
from configuration.schema import ROOT
from configuration.selectors import config_effective_with_sources
from configuration.services import config_update


def _body(effective: dict, sources: dict[str, str]) -> dict:
    return ConfigSerializer({"effective": redact(effective), "sources": sources}).data


def _has_body(request: Request) -> bool:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0) > 0
    except ValueError:
        return False


class ConfigView(APIView):
    @extend_schema(
        tags=["configuration"],
        summary="Effective configuration",
        description="Every key after runtime > environment > file > default precedence, with each leaf's source.",
        responses={200: ConfigSerializer},
    )
    def get(self, request: Request) -> Response:
        return Response(_body(*config_effective_with_sources()))

    @extend_schema(
        tags=["configuration"],
        summary="Change configuration at runtime",
        description=(
            "Stores the given values as runtime overrides after validating the whole resulting "
            "configuration; on any error nothing is written."
        ),
        request={"application/json": CONFIG_CHANGES_SCHEMA},
        responses={
            200: ConfigSerializer,
            400: OpenApiResponse(response=CONFIG_ERRORS_SCHEMA, description="Invalid change; nothing written."),
        },
    )
    def patch(self, request: Request) -> Response:
        if not _has_body(request):
            raise ValidationError({ROOT: ["Send a JSON object of configuration changes."]})
        changes = request.data
        if not isinstance(changes, dict):
            raise ValidationError({ROOT: [f"Expected a JSON object, got {type(changes).__name__}."]})
        principal = request.user
        who = principal.name if isinstance(principal, APIPrincipal) else "unknown"
        config_update(changes=changes, updated_by=f"api:{who}")
        return Response(_body(*config_effective_with_sources()))
