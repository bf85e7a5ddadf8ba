from __future__ import annotations

from typing import TYPE_CHECKING

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from accounts.authentication import APIPrincipal

if TYPE_CHECKING:
    from rest_framework.views import APIView


class HasAPIKeyAccess(BasePermission):
    """Any valid key may read; only full-access keys may write."""

    message = "This API key is read-only."

    def has_permission(self, request: Request, view: APIView) -> bool:
        principal = request.user
        if not isinstance(principal, APIPrincipal):
            return False
        return request.method in SAFE_METHODS or principal.can_write


class StaffOrAPIKey(BasePermission):
    """The API schema: readable with any API key or by a logged-in staff user (for /docs)."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        if isinstance(user, APIPrincipal):
            return True
        return bool(user and getattr(user, "is_staff", False))
