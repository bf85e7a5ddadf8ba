"""The web server's HTTP protocol: uvicorn's httptools protocol with a bound on the request head.

httptools (llhttp) has no limit of its own on the request line and headers: it
keeps a header's bytes in memory until the header ends, so a client that never
ends one grows the process without bound (four 100 MB headers took a worker
from 130 MB to 559 MB). uvicorn's h11 protocol has a bound
(`--h11-max-incomplete-event-size`) but parses in pure Python. This subclass
keeps httptools' speed and counts the bytes fed to the parser while a request's
head is incomplete; past settings.MAX_REQUEST_HEADER_BYTES
(INSTANCE_MANAGER_MAX_HEADER_BYTES, 64 KiB by default, near Envoy's 60 KiB) it
answers 431 and closes the connection, so at most that many bytes of a head
(plus what one read of a pipelined connection brings) are ever held.

Every command that starts the web app selects it (Procfile, README):

    uvicorn ishchat.asgi:application --http ishchat.server:BoundedHttpToolsProtocol ...
    gunicorn ishchat.asgi:application -k ishchat.server.UvicornWorker ...
"""

from __future__ import annotations

import json
import logging
import warnings
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

logger = logging.getLogger("uvicorn.error")

HEAD_TOO_LARGE_STATUS = 431  # Request Header Fields Too Large (RFC 6585)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from django.conf import settings  # the app (and so the settings) is loaded before any connection

        self.max_head_bytes: int = settings.MAX_REQUEST_HEADER_BYTES
        self._reading_head = True
        self._head_bytes = 0  # fed to the parser since the current head began
        self._heads_completed = 0

    def data_received(self, data: bytes) -> None:
        """Feed the parser at most the room left in the current head; a head that is still
        incomplete once that room is used up is answered with 431."""
        while self._reading_head and len(data) > self.max_head_bytes - self._head_bytes:
            room = self.max_head_bytes - self._head_bytes
            completed = self._heads_completed
            self._head_bytes += room
            super().data_received(data[:room])
            data = data[room:]
            if self.transport.is_closing():
                return
            if self._heads_completed == completed:
                self._refuse_head()
                return
        if self._reading_head:
            self._head_bytes += len(data)
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._head_bytes = 0
        self._heads_completed += 1
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_head = True

    def _refuse_head(self) -> None:
        logger.warning("Request head over %d bytes refused (431).", self.max_head_bytes)
        body = json.dumps(
            {
                "detail": f"The request line and headers exceed {self.max_head_bytes} bytes.",
                "code": "request_header_too_large",
            }
        ).encode()
        content = [STATUS_LINE[HEAD_TOO_LARGE_STATUS]]
        for name, value in self.server_state.default_headers:
            content += [name, b": ", value, b"\r\n"]
        content += [
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            b"connection: close\r\n\r\n",
            body,
        ]
        self.transport.write(b"".join(content))
        self.transport.close()


with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # uvicorn.workers warns that it moved to uvicorn-worker
    from uvicorn.workers import UvicornWorker as _UvicornWorker


class UvicornWorker(_UvicornWorker):
    """gunicorn's worker class (`-k ishchat.server.UvicornWorker`) with the bounded protocol."""

    CONFIG_KWARGS = {**_UvicornWorker.CONFIG_KWARGS, "http": "ishchat.server:BoundedHttpToolsProtocol"}
