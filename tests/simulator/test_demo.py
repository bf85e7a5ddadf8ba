"""The demo fleet `make run` registers: once, only on an empty registry, only when demos are on,
and with behaviours that give the dashboards healthy, degraded and unhealthy instances."""

from __future__ import annotations

from dataclasses import asdict
from io import StringIO

import pytest

from instances.choices import CheckStatus, CheckType, InstanceStatus, ProviderType
from instances.health.services import health_check_instance, health_sweep
from instances.models import AIInstance
from instances.services import instance_deregister, instance_register
from simulator.demo import DEMO_FLEET, DEMO_TAG, demo_behaviours, demo_behaviours_apply, demo_fleet_register
from simulator.management.commands.simulate_providers import Command, root_url
from simulator.server import Behaviour, SimulatorApp

pytestmark = pytest.mark.django_db

ROOT = "http://127.0.0.1:9100"


@pytest.fixture
def demo_on(settings):
    settings.DEMO_FLEET = True


def test_it_registers_the_demo_fleet_on_an_empty_registry(demo_on):
    outcome = demo_fleet_register(root_url=ROOT)

    instances = list(AIInstance.objects.order_by("pk"))
    assert len(outcome.registered) == len(instances) == len(DEMO_FLEET)
    assert 8 <= len(instances) <= 10
    assert {instance.provider_type for instance in instances} == set(ProviderType.values)
    assert all(DEMO_TAG in instance.tags for instance in instances)
    assert all(instance.status == InstanceStatus.STARTING and instance.api_key_set for instance in instances)
    by_name = {instance.instance_name: instance for instance in instances}
    assert by_name["zai-glm-4-plus"].endpoint_url == f"{ROOT}/sim/zai-glm-4-plus/api/paas/v4"
    assert by_name["perplexity-sonar"].endpoint_url == f"{ROOT}/sim/perplexity-sonar"
    assert by_name["vllm-llama-3.1-70b"].max_concurrent_requests == 16
    assert "INSTANCE_MANAGER_DEMO=false" in outcome.message


def test_a_second_start_registers_nothing(demo_on):
    demo_fleet_register(root_url=ROOT)

    again = demo_fleet_register(root_url=ROOT)

    assert again.registered == []
    assert "already has 10 instance(s)" in again.message
    assert AIInstance.objects.count() == len(DEMO_FLEET)


def test_an_operators_registry_is_left_alone_even_when_all_is_deregistered(demo_on):
    mine = instance_register(
        provider_type="openai", model_name="gpt-4o", instance_name="mine", endpoint_url="http://127.0.0.1:1/v1"
    )
    instance_deregister(instance=mine, actor="test")

    outcome = demo_fleet_register(root_url=ROOT)

    assert outcome.registered == []
    assert list(AIInstance.objects.values_list("instance_name", flat=True)) == ["mine"]


def test_instance_manager_demo_false_turns_it_off(settings):
    settings.DEMO_FLEET = False

    outcome = demo_fleet_register(root_url=ROOT)

    assert outcome.registered == []
    assert "INSTANCE_MANAGER_DEMO=false" in outcome.message
    assert not AIInstance.objects.exists()


def test_behaviours_follow_the_names_over_the_servers_defaults():
    app = SimulatorApp(Behaviour(reply_tokens=3))

    assert demo_behaviours_apply(app) == len(DEMO_FLEET)

    slow = app.instance("anthropic-haiku-us").behaviour
    assert 2000 < slow.latency_ms + slow.jitter_ms / 2 < 3000
    assert slow.reply_tokens == 3  # the command line's defaults still apply
    assert slow.models == ["claude-3-5-haiku-20241022"]
    assert app.instance("zai-glm-4-flash").behaviour.failure_rate == pytest.approx(0.3)
    assert app.instance("zai-glm-4-flash").behaviour.failure_status == 503
    assert app.instance("perplexity-sonar-pro").behaviour.rate_limit_rpm == 1
    assert app.instance("vllm-llama-3.1-70b").behaviour.vllm_waiting > 16
    assert app.instance("ollama-qwen2.5-workstation").behaviour.down
    healthy = [demo for demo in DEMO_FLEET if demo.scenario == "healthy"]
    assert len(healthy) >= 4
    for demo in healthy:
        behaviour = app.instance(demo.name).behaviour
        assert behaviour.latency_ms >= 50
        assert behaviour.latency_ms + behaviour.jitter_ms <= 300
        assert behaviour.jitter_ms > 0
    assert app.instance("not-a-demo").behaviour == Behaviour(reply_tokens=3)


def test_the_command_prints_what_it_did(demo_on):
    out, err = StringIO(), StringIO()
    command = Command(stdout=out, stderr=err)

    url = root_url("0.0.0.0", 9100)  # noqa: S104 - a wildcard bind is advertised as loopback
    command._demo_fleet(SimulatorApp(), url)
    command._demo_fleet(SimulatorApp(), url)

    lines = out.getvalue().splitlines()
    assert lines[1].startswith("Demo fleet: registered 10 demo instances (tag 'demo') on http://127.0.0.1:9100")
    assert "INSTANCE_MANAGER_DEMO=false" in lines[1]
    assert lines[3] == "Demo fleet: the registry already has 10 instance(s); demo fleet not registered"
    assert err.getvalue() == ""


def test_the_fleet_shows_healthy_degraded_and_unhealthy_results(demo_on, sim_server):
    for name, behaviour in demo_behaviours(Behaviour()).items():
        sim_server.configure(name, **asdict(behaviour))
    demo_fleet_register(root_url=sim_server.root_url)

    health_sweep(check_types=[CheckType.BASIC], force=True)
    second = health_sweep(check_types=[CheckType.BASIC], force=True)
    vllm = AIInstance.objects.get(instance_name="vllm-llama-3.1-70b")
    load = health_check_instance(instance=vllm, check_type=CheckType.LOAD)

    status = {result["instance_name"]: result["status"] for result in second.results}
    expected = {demo.name: CheckStatus.HEALTHY for demo in DEMO_FLEET if demo.scenario == "healthy"}
    expected |= {
        "anthropic-haiku-us": CheckStatus.DEGRADED,  # slow
        "perplexity-sonar-pro": CheckStatus.DEGRADED,  # its one request a minute went to the first sweep
        "ollama-qwen2.5-workstation": CheckStatus.UNHEALTHY,
        "vllm-llama-3.1-70b": CheckStatus.HEALTHY,
    }
    assert {name: status[name] for name in expected} == expected
    assert load.status == CheckStatus.DEGRADED
    assert any("waiting" in issue for issue in load.issues)


def test_the_command_warns_when_demo_instances_point_at_another_port(demo_on):
    demo_fleet_register(root_url="http://127.0.0.1:9100")
    err = StringIO()

    Command(stdout=StringIO(), stderr=err)._demo_fleet(SimulatorApp(), "http://127.0.0.1:9200")

    assert "10 demo instance(s) point at another address than http://127.0.0.1:9200" in err.getvalue()
    assert "SIMULATOR_PORT" in err.getvalue()
