from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from accounts.authentication import APIPrincipal
from ishchat.outage import CACHE_OUTAGE

if TYPE_CHECKING:
    from rest_framework.views import APIView


class APIKeyRateThrottle(SimpleRateThrottle):
    """Requests per API key, counted in the shared cache (Redis when configured).

    Fails open: while the cache is unreachable requests are not throttled, so
    operators keep the API through a Redis outage (logged once, ishchat.outage).
    """

    scope = "api_key"

    def allow_request(self, request: Request, view: APIView) -> bool:
        count = super().allow_request
        return CACHE_OUTAGE.call(lambda: count(request, view), fallback=lambda: True)

    def get_rate(self) -> str:
        # Read per request so the limit follows settings (INSTANCE_MANAGER_API_RATE_LIMIT).
        return settings.API_RATE_LIMIT

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        principal = request.user
        ident = principal.key_id if isinstance(principal, APIPrincipal) else self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}
