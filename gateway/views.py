"""/v1/chat/completions and /v1/models as Django async views.

The same gateway.proxy implementation as the raw ASGI front door
(gateway/asgi.py), for deployments that serve /v1/ through Django's URL
routing and middleware (runserver, WSGI, or ishchat/asgi.py without the
front door). Slower per request: see bench/README.md "Gateway".
"""

from __future__ import annotations

import time

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from gateway.proxy import GatewayError, Reply, default_gateway


def _response(reply: Reply) -> HttpResponse | StreamingHttpResponse:
    response: HttpResponse | StreamingHttpResponse
    if reply.stream is not None:
        response = StreamingHttpResponse(reply.stream, status=reply.status)
    else:
        response = HttpResponse(reply.body, status=reply.status)
    for name, value in reply.headers.items():
        response[name] = value
    return response


def _wrong_method(request: HttpRequest, allowed: str, request_id: str) -> HttpResponse | StreamingHttpResponse:
    error = GatewayError(405, f"Use {allowed} for {request.path}.", code="method_not_allowed")
    return _response(error.reply({"x-request-id": request_id, "allow": allowed}))


@csrf_exempt  # API-key authenticated, no cookies
async def chat_completions(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    started = time.perf_counter()
    gateway = default_gateway()
    request_id = gateway.request_id(request.headers)
    if request.method != "POST":
        return _wrong_method(request, "POST", request_id)
    return _response(await gateway.chat_completions(request.headers, request.body, request_id, started))


async def models(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    started = time.perf_counter()
    gateway = default_gateway()
    request_id = gateway.request_id(request.headers)
    if request.method != "GET":
        return _wrong_method(request, "GET", request_id)
    return _response(await gateway.models(request.headers, request_id, started))
