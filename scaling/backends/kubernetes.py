"""The kubernetes backend: set a Deployment's replicas through its scale subresource.

Uses the official client (``kubernetes``): ``AppsV1Api.read_namespaced_deployment_scale`` then,
when the count differs, ``patch_namespaced_deployment_scale`` with a JSON merge patch
``{"spec": {"replicas": desired}}``. Setting replicas is idempotent, so a retried or resumed event
is harmless. The new pods register themselves with group_id as they start.

Settings: ``namespace``, ``deployment``, and either ``in_cluster: true`` (the pod's service
account) or ``kubeconfig`` (an absolute path on the workers, optionally with ``context``);
``timeout_seconds`` (default 10) bounds each API call.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from scaling.backends.base import (
    BackendError,
    ScaleRequest,
    ScaleResult,
    clean_bool,
    clean_float,
    clean_int,
    clean_str,
    reject_unknown,
    settings_error,
)

if TYPE_CHECKING:
    from kubernetes.client import Configuration

    from scaling.models import ProviderGroup

DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_STARTUP_GRACE_SECONDS = 600
MERGE_PATCH = "application/merge-patch+json"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def configuration_from_settings(settings: dict[str, Any]) -> Configuration:
    """In-cluster service account or a kubeconfig file, as the group's settings say."""
    from kubernetes import client, config

    configuration = client.Configuration()
    if settings.get("in_cluster"):
        config.load_incluster_config(client_configuration=configuration)
    else:
        config.load_kube_config(
            config_file=settings["kubeconfig"],
            context=settings.get("context") or None,
            client_configuration=configuration,
            persist_config=False,
        )
    return configuration


def _api_error(exc: Exception) -> str:
    status, reason, body = getattr(exc, "status", None), getattr(exc, "reason", ""), getattr(exc, "body", None)
    message = ""
    if body:
        try:
            message = json.loads(body).get("message", "")
        except (ValueError, AttributeError, TypeError):
            message = str(body)[:300]
    return f"Kubernetes API answered {status} {reason}".rstrip() + (f": {message}" if message else "")


class KubernetesBackend:
    name = "kubernetes"

    def __init__(self, configuration_factory: Callable[[dict[str, Any]], Configuration] | None = None) -> None:
        self.configuration_factory = configuration_factory or configuration_from_settings

    def clean_settings(self, raw: dict[str, Any], *, previous: dict[str, Any]) -> dict[str, Any]:
        reject_unknown(raw, ("namespace", "deployment", "in_cluster", "kubeconfig", "context", "timeout_seconds",
                             "startup_grace_seconds"))
        namespace = clean_str(raw, "namespace", required=True, max_length=63)
        if not _DNS_LABEL.match(namespace):
            raise settings_error("namespace must be a DNS label (lower-case letters, digits, '-').")
        deployment = clean_str(raw, "deployment", required=True, max_length=253)
        if not _DNS_SUBDOMAIN.match(deployment):
            raise settings_error("deployment must be a DNS subdomain name (lower-case letters, digits, '-', '.').")
        in_cluster = clean_bool(raw, "in_cluster", default=False)
        kubeconfig = clean_str(raw, "kubeconfig", required=False, max_length=1000)
        if in_cluster == bool(kubeconfig):
            raise settings_error("Give either in_cluster: true or a kubeconfig path, not both.")
        if kubeconfig and not kubeconfig.startswith("/"):
            raise settings_error("kubeconfig must be an absolute path on the workers.")
        return {
            "namespace": namespace,
            "deployment": deployment,
            "in_cluster": in_cluster,
            "kubeconfig": kubeconfig,
            "context": clean_str(raw, "context", required=False, max_length=253),
            "timeout_seconds": clean_float(raw, "timeout_seconds", default=DEFAULT_TIMEOUT_SECONDS, low=0, high=60),
            "startup_grace_seconds": clean_int(
                raw, "startup_grace_seconds", default=DEFAULT_STARTUP_GRACE_SECONDS, low=0, high=86_400
            ),
        }

    def public_settings(self, stored: dict[str, Any]) -> dict[str, Any]:
        return dict(stored)

    def scale(self, group: ProviderGroup, request: ScaleRequest, *, now: datetime) -> ScaleResult:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException
        from kubernetes.config.config_exception import ConfigException

        settings = group.backend_settings
        namespace, deployment = settings.get("namespace"), settings.get("deployment")
        if not namespace or not deployment:
            raise BackendError("The kubernetes backend needs namespace and deployment.")
        timeout = float(settings.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS))
        try:
            configuration = self.configuration_factory(settings)
        except (ConfigException, OSError, ValueError, TypeError) as exc:
            raise BackendError(f"Kubernetes configuration could not be loaded: {type(exc).__name__}: {exc}") from None
        configuration.retries = 0  # retries are the event's, with backoff
        target = f"deployment {namespace}/{deployment}"
        try:
            with client.ApiClient(configuration) as api_client:
                apps = client.AppsV1Api(api_client)
                before = apps.read_namespaced_deployment_scale(deployment, namespace, _request_timeout=timeout)
                replicas = before.spec.replicas if before.spec is not None else None
                if replicas == request.desired:
                    return ScaleResult(f"{target} already has {replicas} replicas",
                                       {"replicas_before": replicas, "replicas": replicas})
                after = apps.patch_namespaced_deployment_scale(
                    deployment,
                    namespace,
                    {"spec": {"replicas": request.desired}},
                    _content_type=MERGE_PATCH,
                    _request_timeout=timeout,
                )
        except ApiException as exc:
            raise BackendError(f"{target}: {_api_error(exc)}", details={"status_code": exc.status}) from None
        except Exception as exc:  # urllib3 connection errors, timeouts, TLS: all retried with backoff
            raise BackendError(f"{target}: {type(exc).__name__}: {exc}") from None
        new_replicas = after.spec.replicas if after.spec is not None else None
        if new_replicas != request.desired:
            raise BackendError(f"{target}: asked for {request.desired} replicas, the API kept {new_replicas}",
                               details={"replicas_before": replicas, "replicas": new_replicas})
        return ScaleResult(f"{target} replicas {replicas} -> {new_replicas}",
                           {"replicas_before": replicas, "replicas": new_replicas})
