"""A tiny stand-in for the Kubernetes API server on loopback: the Deployment scale subresource only.

GET   /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale -> the Scale object
PATCH (merge or strategic merge patch {"spec": {"replicas": n}}) -> the updated Scale object

Unknown deployments answer 404 with a Status object, a wrong bearer token 401, and
``fail_next`` answers that many requests with 500 first. Every request is recorded.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_SCALE_PATH = re.compile(r"^/apis/apps/v1/namespaces/(?P<ns>[^/]+)/deployments/(?P<name>[^/]+)/scale$")
PATCH_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class KubeStandIn:
    url: str = ""
    token: str = "standin-token"
    deployments: dict[tuple[str, str], int] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)
    fail_next: int = 0
    resource_version: int = 1

    def scale_object(self, namespace: str, name: str) -> dict[str, Any]:
        replicas = self.deployments[(namespace, name)]
        return {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": str(self.resource_version)},
            "spec": {"replicas": replicas},
            "status": {"replicas": replicas, "selector": f"app={name}"},
        }

    def kubeconfig(self) -> str:
        """A kubeconfig that points at this server (plain http, bearer token)."""
        return (
            "apiVersion: v1\nkind: Config\ncurrent-context: standin\n"
            f"clusters:\n- name: standin\n  cluster:\n    server: {self.url}\n"
            "contexts:\n- name: standin\n  context:\n    cluster: standin\n    user: standin\n"
            f"users:\n- name: standin\n  user:\n    token: {self.token}\n"
        )


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Status", "status": "Failure", "message": message, "reason": reason,
            "code": code}


@contextmanager
def running_standin() -> Iterator[KubeStandIn]:
    standin = KubeStandIn()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            with lock:
                standin.requests.append(
                    Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                if standin.fail_next:
                    standin.fail_next -= 1
                    return self._answer(500, _status(500, "InternalError", "stand-in told to fail"))
                if self.headers.get("Authorization") != f"Bearer {standin.token}":
                    return self._answer(401, _status(401, "Unauthorized", "Unauthorized"))
                match = _SCALE_PATH.match(self.path.split("?")[0])
                if not match:
                    return self._answer(404, _status(404, "NotFound", "the server could not find the resource"))
                key = (match["ns"], match["name"])
                if key not in standin.deployments:
                    return self._answer(
                        404, _status(404, "NotFound", f'deployments.apps "{key[1]}" not found')
                    )
                if self.command == "PATCH":
                    if self.headers.get("Content-Type") not in PATCH_TYPES:
                        return self._answer(
                            415, _status(415, "UnsupportedMediaType", f"unsupported {self.headers.get('Content-Type')}")
                        )
                    replicas = (body or {}).get("spec", {}).get("replicas")
                    if not isinstance(replicas, int) or replicas < 0:
                        return self._answer(422, _status(422, "Invalid", "spec.replicas must be a non-negative int"))
                    standin.deployments[key] = replicas
                    standin.resource_version += 1
                return self._answer(200, standin.scale_object(*key))

        do_GET = _handle
        do_PATCH = _handle

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    standin.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield standin
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
