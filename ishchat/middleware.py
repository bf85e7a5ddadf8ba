"""Request ids: every request carries one, in the logs (ishchat.request_context) and the response."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

from ishchat.request_context import _request_id, set_request_id

HEADER = "X-Request-ID"
# A caller's id is kept when it is short and plain (it ends up in logs and headers); otherwise replaced.
_VALID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")


def request_id_for(request: HttpRequest) -> str:
    incoming = request.headers.get(HEADER, "")
    return incoming if _VALID.match(incoming) else uuid.uuid4().hex


class RequestIdMiddleware:
    """Sets X-Request-ID when missing (or unsafe), exposes it as request.request_id and in every log
    line of the request, and returns it in the response header."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if iscoroutinefunction(self):
            return self._acall(request)
        request_id = request_id_for(request)
        request.request_id = request_id  # type: ignore[attr-defined]
        request.META["HTTP_X_REQUEST_ID"] = request_id
        token = set_request_id(request_id)
        try:
            response: HttpResponse = self.get_response(request)
        finally:
            _request_id.reset(token)  # type: ignore[arg-type]
        response.setdefault(HEADER, request_id)
        return response

    async def _acall(self, request: HttpRequest) -> Any:
        request_id = request_id_for(request)
        request.request_id = request_id  # type: ignore[attr-defined]
        request.META["HTTP_X_REQUEST_ID"] = request_id
        token = set_request_id(request_id)
        try:
            get_response: Callable[[HttpRequest], Awaitable[HttpResponse]] = self.get_response
            response = await get_response(request)
        finally:
            _request_id.reset(token)  # type: ignore[arg-type]
        response.setdefault(HEADER, request_id)
        return response
