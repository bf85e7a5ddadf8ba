"""API plumbing shared by every app: the exception handler and pagination."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from ishchat.errors import ConflictError, ServiceUnavailableError
from ishchat.outage import DATABASE_ERRORS, DATABASE_OUTAGE


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Map domain errors and an unreachable database to HTTP; everything else takes DRF's shape."""
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        exc = ValidationError(detail=detail)
    if isinstance(exc, ConflictError):
        body: dict[str, Any] = {"detail": exc.message, "code": "conflict"}
        if exc.field:
            body[exc.field] = [exc.message]
        return Response(body, status=status.HTTP_409_CONFLICT)
    if isinstance(exc, ServiceUnavailableError):
        return Response(
            {"detail": exc.message, "code": exc.code, **exc.details},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    if isinstance(exc, DATABASE_ERRORS) and DATABASE_OUTAGE.is_outage(exc):
        # The database is down, refusing, or the pool found no connection in time: the client may
        # retry, and the log gets one line per outage instead of a traceback per request.
        DATABASE_OUTAGE.failed(exc)
        return Response(
            {"detail": "The database is unreachable; retry shortly.", "code": "database_unavailable"},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(round(DATABASE_OUTAGE.retry_seconds))},
        )
    return drf_exception_handler(exc, context)


class LimitOffset(LimitOffsetPagination):
    default_limit = 100
    max_limit = 1000


class StrictFieldsMixin:
    """Reject fields the serializer does not know, so a typo is an error, not a no-op."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            known = set(self.fields)  # type: ignore[attr-defined]
            unknown = sorted(set(data) - known)
            if unknown:
                raise ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)  # type: ignore[misc]


# Far beyond any real page, and safe from integer overflow in SQL (offset + limit).
MAX_OFFSET = 1_000_000_000


def offset_field() -> Any:
    """The `offset` query parameter of every list endpoint."""
    from rest_framework import serializers

    return serializers.IntegerField(min_value=0, max_value=MAX_OFFSET, required=False, default=0)


def page_schema(name: str, item: Any) -> Any:
    """The OpenAPI shape of a list page: {count, limit, offset, results: [item]}."""
    from drf_spectacular.utils import inline_serializer
    from rest_framework import serializers

    return inline_serializer(
        name=name,
        fields={
            "count": serializers.IntegerField(),
            "limit": serializers.IntegerField(),
            "offset": serializers.IntegerField(),
            "results": item,
        },
    )


def page_response(queryset: Any, serializer_class: Any, *, limit: int, offset: int) -> Any:
    """Every list endpoint's answer: one page of `queryset` and the total count."""
    from rest_framework.response import Response

    page = list(queryset[offset : offset + limit])
    return Response(
        {
            "count": queryset.count(),
            "limit": limit,
            "offset": offset,
            "results": serializer_class(page, many=True).data,
        }
    )
