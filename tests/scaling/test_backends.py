"""Scaling backends doing real things over loopback: the standby pool with health checks against
the simulated provider, the signed webhook to a real receiver, and the official Kubernetes client
against a stand-in API server. No HTTP is mocked."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from kubernetes import client as kube_client

from instances.choices import InstanceStatus
from instances.models import AIInstance, StatusTransition
from instances.services import instance_set_operator_status, instance_set_status
from ishchat import crypto
from scaling import services
from scaling.backends import BackendError, ScaleRequest, backend_for
from scaling.backends.kubernetes import KubernetesBackend
from scaling.backends.pool import drain_step
from scaling.backends.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER
from scaling.choices import ScalingEventStatus
from scaling.models import ScalingEvent
from tests.scaling.support import TRACKING, make_group, make_member, make_sim_member

pytestmark = pytest.mark.django_db
# Spread as policy keyword arguments (**Any); support.TRACKING alone is inferred as dict[str, float].
SECRET = "whsec-scaling-0123456789"


def request_for(group, *, current: int, desired: int, event_id: int = 7) -> ScaleRequest:
    return ScaleRequest(event_id=event_id, group_id=group.pk, group_name=group.group_name,
                        direction="up" if desired > current else "down", trigger="utilization",
                        current=current, desired=desired, reason=f"scale {current} -> {desired}")


def statuses(group) -> dict[str, str]:
    return dict(AIInstance.objects.filter(group=group).values_list("instance_name", "status"))


# --- pool -----------------------------------------------------------------------------------------

def test_the_pool_activates_a_standby_instance_only_after_a_passing_health_check(sim_server, now):
    group = make_group(**TRACKING)
    make_sim_member(sim_server, group, "serving", status=InstanceStatus.HEALTHY)
    # The failing one looks more useful (higher weight), so it is tried first.
    make_sim_member(sim_server, group, "broken", status=InstanceStatus.STANDBY, weight=500)
    make_sim_member(sim_server, group, "spare", status=InstanceStatus.STANDBY, weight=100)
    sim_server.configure("broken", failure_rate=1.0, failure_status=503)

    result = backend_for("pool").scale(group, request_for(group, current=1, desired=2), now=now)

    assert statuses(group) == {"serving": "healthy", "broken": "standby", "spare": "healthy"}
    assert result.details["activated"] == ["spare"]
    assert [item["instance"] for item in result.details["rejected"]] == ["broken"]
    assert sim_server.stats("broken")["total"] >= 1 and sim_server.stats("spare")["total"] == 1
    transition = StatusTransition.objects.get(instance__instance_name="spare")
    assert (transition.old_status, transition.new_status, transition.source) == ("standby", "healthy", "scaling")
    assert "basic check" in transition.reason


def test_the_pool_fails_the_event_when_too_few_standby_instances_pass(sim_server, now):
    group = make_group(**TRACKING)
    make_sim_member(sim_server, group, "only", status=InstanceStatus.HEALTHY)
    make_sim_member(sim_server, group, "down-one", status=InstanceStatus.STANDBY)
    sim_server.configure("down-one", down=True)

    with pytest.raises(BackendError) as error:
        backend_for("pool").scale(group, request_for(group, current=1, desired=3), now=now)

    assert "activated 0 of 2" in str(error.value)
    assert error.value.details["rejected"][0]["instance"] == "down-one"
    assert statuses(group)["down-one"] == "standby"


def test_a_pool_event_activates_what_it_can_and_a_retry_does_only_the_rest(sim_server, now):
    group = make_group(**{**TRACKING, "scale_up_cooldown": 0})
    for name in ("a", "b"):
        make_sim_member(sim_server, group, name, status=InstanceStatus.HEALTHY, current_load=9)
    make_sim_member(sim_server, group, "spare-1", status=InstanceStatus.STANDBY)
    event_id = services.group_evaluate(group_id=group.pk, now=now)["event_id"]
    ScalingEvent.objects.filter(pk=event_id).update(new_count=4)  # more than the pool holds

    event = services.group_apply_event(event_id=event_id, now=now)

    assert event is not None
    assert event.status == ScalingEventStatus.PENDING and "activated 1 of 2" in event.error
    assert statuses(group)["spare-1"] == "healthy"
    make_sim_member(sim_server, group, "spare-2", status=InstanceStatus.STANDBY)
    event = services.group_apply_event(event_id=event_id, now=event.next_attempt_at)
    assert event is not None
    assert event.status == ScalingEventStatus.COMPLETED and event.result["activated"] == ["spare-2"]
    assert sim_server.stats("spare-1")["total"] == 1  # not checked again
    group.refresh_from_db()
    assert group.desired_instances == 4


def test_a_degraded_standby_comes_back_as_starting(sim_server, now):
    from configuration.services import config_update

    config_update(
        changes={"monitoring": {"alert_thresholds": {"response_time_warning": 50, "response_time_critical": 1000}}},
        updated_by="test",
    )
    group = make_group(**TRACKING)
    make_sim_member(sim_server, group, "slow", status=InstanceStatus.STANDBY)
    sim_server.configure("slow", latency_ms=120)

    backend_for("pool").scale(group, request_for(group, current=0, desired=1), now=now)

    assert statuses(group)["slow"] == InstanceStatus.STARTING


def test_the_pool_drains_the_least_useful_instances_and_parks_starting_ones_first(now):
    group = make_group(**TRACKING)
    make_member(group, "warming", status=InstanceStatus.STARTING)
    make_member(group, "best", health_score=1.0, last_response_time_ms=100)
    make_member(group, "slow", health_score=1.0, last_response_time_ms=900)
    make_member(group, "sick", health_score=0.4)

    result = backend_for("pool").scale(group, request_for(group, current=4, desired=1), now=now)

    assert result.details["parked"] == ["warming"] and result.details["drained"] == ["sick", "slow"]
    assert statuses(group) == {"warming": "standby", "best": "healthy", "slow": "draining", "sick": "draining"}


def test_drained_instances_go_to_standby_when_idle_or_after_the_drain_timeout(now):
    group = make_group(**TRACKING, backend_settings={"drain_timeout_seconds": 120})
    idle = make_member(group, "idle", current_load=0)
    busy = make_member(group, "busy", current_load=3)
    operators = make_member(group, "operators", current_load=0)
    for instance in (idle, busy):
        instance_set_status(instance=instance, status=InstanceStatus.DRAINING, reason="scale down", source="scaling")
    instance_set_operator_status(instance=operators, status=InstanceStatus.DRAINING, actor="admin:root")

    assert drain_step(now=timezone.now()) == ["idle"]
    assert statuses(group) == {"idle": "standby", "busy": "draining", "operators": "draining"}

    assert drain_step(now=timezone.now() + timedelta(seconds=121)) == ["busy"]
    busy.refresh_from_db()
    assert busy.status == "standby" and "drain timeout 120 s with 3 request(s)" in busy.status_reason
    assert statuses(group)["operators"] == "draining"  # an operator's drain is theirs


def test_scaling_brings_its_own_draining_instances_back_before_standby_ones(sim_server, now):
    group = make_group(**TRACKING)
    drained = make_sim_member(sim_server, group, "drained", status=InstanceStatus.HEALTHY)
    make_sim_member(sim_server, group, "cold", status=InstanceStatus.STANDBY, weight=1000)
    instance_set_status(instance=drained, status=InstanceStatus.DRAINING, reason="scale down", source="scaling")

    backend_for("pool").scale(group, request_for(group, current=0, desired=1), now=now)

    assert statuses(group) == {"drained": "healthy", "cold": "standby"}


# --- webhook --------------------------------------------------------------------------------------

def webhook_group(url: str, secret: str | None = SECRET):
    settings = {"url": url, **({"secret": secret} if secret else {})}
    return services.group_create(group_name="hooked", provider_type="openai", backend="webhook",
                                 backend_settings=settings)


def test_the_webhook_posts_the_target_as_signed_json(webhook, now):
    group = webhook_group(webhook.url)

    result = backend_for("webhook").scale(group, request_for(group, current=2, desired=4, event_id=42), now=now)

    (received,) = webhook.received
    assert received.path == "/hooks/scale" and received.headers["content-type"] == "application/json"
    assert received.json() == {
        "event_id": 42, "group": {"id": group.pk, "name": "hooked"}, "current": 2, "desired": 4,
        "direction": "up", "trigger": "utilization", "reason": "scale 2 -> 4", "timestamp": int(now.timestamp()),
    }
    timestamp = received.headers[TIMESTAMP_HEADER.lower()]
    expected = hmac.new(SECRET.encode(), timestamp.encode() + b"." + received.body, hashlib.sha256).hexdigest()
    assert received.headers[SIGNATURE_HEADER.lower()] == f"sha256={expected}"
    assert result.details == {"status_code": 200}


def test_the_webhook_secret_is_stored_encrypted_and_never_shown(webhook):
    group = webhook_group(webhook.url)

    stored = group.backend_settings
    assert SECRET not in json.dumps(stored) and crypto.decrypt(stored["secret_encrypted"]) == SECRET
    shown = services.public_backend_settings(group)
    assert shown["secret_set"] is True and "secret_encrypted" not in shown and SECRET not in json.dumps(shown)

    kept = services.group_configure_autoscaling(group=group, backend_settings={"url": webhook.url,
                                                                               "timeout_seconds": 3})
    assert crypto.decrypt(kept.backend_settings["secret_encrypted"]) == SECRET
    cleared = services.group_configure_autoscaling(group=kept, backend_settings={"url": webhook.url, "secret": ""})
    assert "secret_encrypted" not in cleared.backend_settings


def test_without_a_secret_the_webhook_is_not_signed(webhook, now):
    group = webhook_group(webhook.url, secret=None)

    backend_for("webhook").scale(group, request_for(group, current=1, desired=2), now=now)

    assert SIGNATURE_HEADER.lower() not in webhook.received[0].headers


def test_the_webhook_does_not_follow_redirects(webhook, now):
    webhook.status = 307
    group = webhook_group(webhook.url)

    with pytest.raises(BackendError, match="HTTP 307"):
        backend_for("webhook").scale(group, request_for(group, current=1, desired=2), now=now)
    assert len(webhook.received) == 1


def test_an_unreachable_webhook_is_a_backend_error(now):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    group = webhook_group(f"http://127.0.0.1:{port}/hooks", secret=None)

    with pytest.raises(BackendError, match="ConnectError"):
        backend_for("webhook").scale(group, request_for(group, current=1, desired=2), now=now)


@pytest.mark.parametrize(
    "raw_settings",
    [
        {},
        {"url": "ftp://example.com/hook"},
        {"url": "http://169.254.169.254/latest"},
        {"url": "http://127.0.0.1:9/hook", "timeout_seconds": 0},
        {"url": "http://127.0.0.1:9/hook", "retries": 3},
        {"url": "http://127.0.0.1:9/hook", "secret": 12345},
    ],
)
def test_bad_webhook_settings_are_refused(raw_settings):
    with pytest.raises(ValidationError) as error:
        services.group_create(group_name="g", provider_type="openai", backend="webhook", backend_settings=raw_settings)
    assert "backend_settings" in error.value.message_dict


# --- kubernetes -----------------------------------------------------------------------------------

def kube_group(kube, tmp_path, **settings):
    kubeconfig = tmp_path / "kubeconfig.yaml"
    kubeconfig.write_text(kube.kubeconfig())
    return services.group_create(
        group_name="k8s", provider_type="openai_compatible", backend="kubernetes",
        backend_settings={"namespace": "ml", "deployment": "vllm", "kubeconfig": str(kubeconfig), **settings},
    )


def test_kubernetes_patches_the_deployment_scale_through_a_kubeconfig(kube, tmp_path, now):
    kube.deployments[("ml", "vllm")] = 2
    group = kube_group(kube, tmp_path)

    result = backend_for("kubernetes").scale(group, request_for(group, current=2, desired=5), now=now)

    assert kube.deployments[("ml", "vllm")] == 5
    assert result.details == {"replicas_before": 2, "replicas": 5}
    read, patch = kube.requests
    assert (read.method, read.path) == ("GET", "/apis/apps/v1/namespaces/ml/deployments/vllm/scale")
    assert (patch.method, patch.path) == ("PATCH", "/apis/apps/v1/namespaces/ml/deployments/vllm/scale")
    assert patch.headers["content-type"] == "application/merge-patch+json"
    assert patch.body == {"spec": {"replicas": 5}}
    assert patch.headers["authorization"] == f"Bearer {kube.token}"


def test_kubernetes_with_an_injected_configuration(kube, now):
    kube.deployments[("ml", "vllm")] = 4
    group = make_group(backend="kubernetes", backend_settings={"namespace": "ml", "deployment": "vllm",
                                                               "in_cluster": True})

    def configuration(settings):
        config = kube_client.Configuration(host=kube.url)
        config.api_key = {"BearerToken": kube.token}
        config.api_key_prefix = {"BearerToken": "Bearer"}
        return config

    backend = KubernetesBackend(configuration_factory=configuration)
    result = backend.scale(group, request_for(group, current=4, desired=2), now=now)

    assert kube.deployments[("ml", "vllm")] == 2 and result.note == "deployment ml/vllm replicas 4 -> 2"
    again = backend.scale(group, request_for(group, current=4, desired=2), now=now)
    assert "already has 2 replicas" in again.note and len(kube.requests) == 3  # read only: idempotent


def test_a_missing_deployment_is_a_backend_error_with_the_api_message(kube, tmp_path, now):
    group = kube_group(kube, tmp_path, deployment="nope")

    with pytest.raises(BackendError) as error:
        backend_for("kubernetes").scale(group, request_for(group, current=1, desired=2), now=now)

    assert 'ml/nope: Kubernetes API answered 404' in str(error.value) and "not found" in str(error.value)


def test_a_kubernetes_failure_fails_the_event_and_the_retry_completes_it(kube, tmp_path, now):
    kube.deployments[("ml", "vllm")] = 1
    group = kube_group(kube, tmp_path)
    services.group_configure_autoscaling(group=group, enabled=True, **TRACKING)
    make_member(group, current_load=9)
    event_id = services.group_evaluate(group_id=group.pk, now=now)["event_id"]
    kube.fail_next = 1

    failed = services.group_apply_event(event_id=event_id, now=now)

    assert failed is not None
    assert failed.status == "pending" and "500" in failed.error and kube.deployments[("ml", "vllm")] == 1
    done = services.group_apply_event(event_id=event_id, now=failed.next_attempt_at)
    assert done is not None
    assert done.status == "completed" and kube.deployments[("ml", "vllm")] == 2
    group.refresh_from_db()
    assert group.desired_instances == 2


def test_replicas_asked_of_kubernetes_count_as_starting_until_they_register(kube, tmp_path, now):
    kube.deployments[("ml", "vllm")] = 1
    group = kube_group(kube, tmp_path)
    services.group_configure_autoscaling(group=group, enabled=True, **{**TRACKING, "scale_up_cooldown": 0})
    make_member(group, current_load=9)
    event_id = services.group_evaluate(group_id=group.pk, now=now)["event_id"]
    services.group_apply_event(event_id=event_id, now=now)

    later = services.group_evaluate(group_id=group.pk, dry_run=True, now=now + timedelta(seconds=30))

    assert (later["active"], later["starting"], later["current"]) == (1, 1, 2)


def test_an_unreadable_kubeconfig_is_a_backend_error(tmp_path, now):
    group = make_group(backend="kubernetes", backend_settings={"namespace": "ml", "deployment": "vllm",
                                                               "kubeconfig": str(tmp_path / "missing.yaml")})

    with pytest.raises(BackendError, match="configuration could not be loaded"):
        backend_for("kubernetes").scale(group, request_for(group, current=1, desired=2), now=now)


@pytest.mark.parametrize(
    "raw_settings",
    [
        {"namespace": "ml", "deployment": "vllm"},
        {"namespace": "ml", "deployment": "vllm", "in_cluster": True, "kubeconfig": "/etc/kube"},
        {"namespace": "ml", "deployment": "vllm", "kubeconfig": "relative/kubeconfig"},
        {"namespace": "ML_Prod", "deployment": "vllm", "in_cluster": True},
        {"namespace": "ml", "deployment": "vllm!", "in_cluster": True},
        {"namespace": "ml", "deployment": "vllm", "in_cluster": "yes"},
        {"namespace": "ml", "deployment": "vllm", "in_cluster": True, "token": "x"},
    ],
)
def test_bad_kubernetes_settings_are_refused(raw_settings):
    with pytest.raises(ValidationError) as error:
        services.group_create(
            group_name="g", provider_type="openai", backend="kubernetes", backend_settings=raw_settings
        )
    assert "backend_settings" in error.value.message_dict
