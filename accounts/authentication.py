"""API key authentication: `Authorization: Bearer <key>` or `X-API-Key: <key>`.

The deployment key BACKEND_API_KEY always has full access and is compared in
constant time; other keys are ProjectAPIKey rows, verified against their hash.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

from django.conf import settings
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from accounts.choices import Access
from accounts.models import ProjectAPIKey


@dataclass(frozen=True)
class APIPrincipal:
    """Who is calling: enough for permissions, throttling and logs, never the key."""

    key_id: str
    name: str
    access: str

    is_authenticated = True
    is_anonymous = False

    @property
    def can_write(self) -> bool:
        return self.access == Access.FULL


BACKEND_PRINCIPAL = APIPrincipal(key_id="backend", name="BACKEND_API_KEY", access=Access.FULL)


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    get = headers.get
    authorization = get("Authorization") or get("authorization") or ""
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    header_key = get("X-API-Key") or get("x-api-key")
    return header_key.strip() if header_key else None


def principal_for_key(key: str) -> APIPrincipal | None:
    backend_key = settings.BACKEND_API_KEY
    if backend_key and hmac.compare_digest(key.encode(), backend_key.encode()):
        return BACKEND_PRINCIPAL
    try:
        api_key = ProjectAPIKey.objects.get_from_key(key)
    except ProjectAPIKey.DoesNotExist:
        return None
    if api_key.has_expired:
        return None
    api_key = cast(ProjectAPIKey, api_key)
    return APIPrincipal(key_id=api_key.prefix, name=api_key.name, access=api_key.access)


class APIKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[APIPrincipal, None] | None:
        key = key_from_headers(request.headers)
        if key is None:
            return None
        principal = principal_for_key(key)
        if principal is None:
            raise AuthenticationFailed("Invalid or revoked API key.")
        return principal, None

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
