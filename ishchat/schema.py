"""OpenAPI generation: every operation documents the errors it can answer."""

from __future__ import annotations

from typing import Any, Literal

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter

_ERROR = {
    "type": "object",
    "properties": {"detail": {"type": "string"}, "code": {"type": "string"}},
    "additionalProperties": True,
}
_FIELD_ERRORS = {
    "type": "object",
    "description": "Field name (or dotted path) -> list of messages, or `detail`.",
    "additionalProperties": True,
}
_DESCRIPTIONS = {
    "400": "Invalid input; nothing was changed.",
    "401": "Missing or invalid API key.",
    "403": "The API key may not do this (read-only key on a write).",
    "404": "No such object.",
    "409": "Conflicts with an existing object.",
    "413": "The request body is over this path's size bound.",
    "415": "The request body is not application/json.",
    "429": "Too many requests for this API key; see Retry-After.",
    "503": "Nothing can serve this right now.",
}


def _error(code: str, schema: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = {"description": _DESCRIPTIONS[code], "content": {"application/json": {"schema": schema}}}
    if code == "429":
        response["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}}
    return response


class AutoSchema(SpectacularAutoSchema):
    def get_override_parameters(self) -> list[Any]:
        """instance_id is a UUID (the path converter takes any string so fixed paths such as
        instances/status can sit beside it; the schema says what an id really is)."""
        parameters = list(super().get_override_parameters())
        if "{instance_id}" in self.path:
            parameters.append(OpenApiParameter("instance_id", OpenApiTypes.UUID, OpenApiParameter.PATH))
        return parameters

    def _get_response_bodies(self, direction: Literal["request", "response"] = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        codes = ["401", "403", "429"]
        if self.method in ("POST", "PUT", "PATCH") or self._get_parameters():
            codes.append("400")
        if "{" in self.path:
            codes.append("404")
        if self.method in ("POST", "PUT", "PATCH"):
            codes += ["413", "415"]  # the edge's body bound (ishchat.edge) and the JSON-only parser
        if self.method in ("POST", "PATCH"):
            codes.append("409")
        for code in codes:
            responses.setdefault(code, _error(code, _FIELD_ERRORS if code == "400" else _ERROR))
        return responses
