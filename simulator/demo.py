"""The demo fleet: what `make run` shows on a fresh machine.

Ten instances of the five provider types, all served by the simulated provider
that `manage.py simulate_providers --demo-fleet` runs (the Procfile's
`simulator` process). Each simulated instance is named after its registry
instance, so its behaviour follows from its name on every start of the
simulator, whether the fleet was registered now or by an earlier run:

    healthy    five instances answering in 50-300 ms with jitter
    degraded   one slow (about 2.5 s, over the 2 s response-time warning),
               one rate limited (1 request a minute, then 429 with Retry-After),
               one vLLM server with a queue (its /metrics report 24 waiting)
    flapping   one failing 30 % of requests with 503
    unhealthy  one that drops every connection (a switched-off workstation)

Registration happens only when the registry holds no instance at all (active
or deregistered) and settings.DEMO_FLEET is on (INSTANCE_MANAGER_DEMO=false
turns it off), so an operator's registry is never touched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction

from instances.choices import ProviderType
from instances.models import AIInstance
from instances.services import instance_register
from ishchat.errors import ConflictError
from simulator.server import Behaviour, SimulatorApp, instance_base_url

DEMO_TAG = "demo"
# Any key will do (the simulated instances require none); shaped unlike real keys on purpose.
DEMO_API_KEY = "demo-key-for-the-simulated-provider"


@dataclass(frozen=True)
class DemoInstance:
    name: str
    provider_type: str
    model_name: str
    region: str
    scenario: str
    behaviour: Mapping[str, Any]
    other_models: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def listed_models(self) -> list[str]:
        """What the simulated models listing answers: the registered model first, so basic checks find it."""
        return [self.model_name, *self.other_models]


DEMO_FLEET: tuple[DemoInstance, ...] = (
    DemoInstance(
        "openai-gpt-4o-eu", ProviderType.OPENAI, "gpt-4o", "eu-west-1", "healthy",
        {"latency_ms": 120, "jitter_ms": 80}, ("gpt-4o-mini", "o3-mini"),
    ),
    DemoInstance(
        "openai-gpt-4o-mini-us", ProviderType.OPENAI, "gpt-4o-mini", "us-east-1", "healthy",
        {"latency_ms": 60, "jitter_ms": 40}, ("gpt-4o",),
    ),
    DemoInstance(
        "anthropic-sonnet-eu", ProviderType.ANTHROPIC, "claude-sonnet-4-20250514", "eu-central-1", "healthy",
        {"latency_ms": 180, "jitter_ms": 120}, ("claude-3-5-haiku-20241022",),
    ),
    DemoInstance(
        "anthropic-haiku-us", ProviderType.ANTHROPIC, "claude-3-5-haiku-20241022", "us-west-2",
        "slow: answers in about 2.5 s, over the 2 s response-time warning (degraded)",
        {"latency_ms": 2400, "jitter_ms": 200},
    ),
    DemoInstance(
        "zai-glm-4-plus", ProviderType.ZAI, "glm-4-plus", "cn-north-1", "healthy",
        {"latency_ms": 150, "jitter_ms": 100}, ("glm-4-flash", "glm-4"),
    ),
    DemoInstance(
        "zai-glm-4-flash", ProviderType.ZAI, "glm-4-flash", "cn-north-1",
        "flaky: 30% of requests fail with 503 (flaps, sometimes unhealthy)",
        {"latency_ms": 90, "jitter_ms": 60, "failure_rate": 0.3, "failure_status": 503}, ("glm-4-plus",),
    ),
    DemoInstance(
        "perplexity-sonar-pro", ProviderType.PERPLEXITY, "sonar-pro", "us-east-1",
        "rate limited: 1 request a minute, then 429 with Retry-After (degraded)",
        {"latency_ms": 200, "jitter_ms": 80, "rate_limit_rpm": 1},
    ),
    DemoInstance(
        "perplexity-sonar", ProviderType.PERPLEXITY, "sonar", "us-east-1", "healthy",
        {"latency_ms": 110, "jitter_ms": 70},
    ),
    DemoInstance(
        "vllm-llama-3.1-70b", ProviderType.OPENAI_COMPATIBLE, "meta-llama/Llama-3.1-70B-Instruct", "on-prem",
        "vLLM with a queue: 16 running, 24 waiting, KV cache 93% (load checks degraded)",
        {"latency_ms": 250, "jitter_ms": 50, "vllm_running": 16, "vllm_waiting": 24, "vllm_kv_cache_usage": 0.93},
        options={"max_concurrent_requests": 16},
    ),
    DemoInstance(
        "ollama-qwen2.5-workstation", ProviderType.OPENAI_COMPATIBLE, "qwen2.5:14b", "on-prem",
        "down: drops every connection (unhealthy after 3 failed checks)",
        {"down": True, "metrics_enabled": False},
    ),
)  # fmt: skip


@dataclass(frozen=True)
class DemoFleetOutcome:
    registered: list[AIInstance]
    message: str


def demo_behaviours(defaults: Behaviour) -> dict[str, Behaviour]:
    """Each demo instance's simulated behaviour by its simulator name, over the server's default behaviour."""
    return {
        demo.name: Behaviour.from_mapping({**demo.behaviour, "models": demo.listed_models}, defaults)
        for demo in DEMO_FLEET
    }


def demo_behaviours_apply(app: SimulatorApp) -> int:
    """Give the demo instances of an in-process simulator their behaviours; returns how many."""
    behaviours = demo_behaviours(app.defaults)
    for name, behaviour in behaviours.items():
        app.instance(name).behaviour = behaviour
    return len(behaviours)


def demo_instances_elsewhere(*, root_url: str) -> list[str]:
    """Active demo instances whose endpoint is not on this simulator (SIMULATOR_PORT changed since they were
    registered): they will fail their checks, and the command says why."""
    prefix = f"{root_url.rstrip('/')}/sim/"
    names = AIInstance.objects.filter(is_active=True, instance_name__in=[demo.name for demo in DEMO_FLEET])
    return sorted(
        name for name, url in names.values_list("instance_name", "endpoint_url") if not url.startswith(prefix)
    )


def demo_fleet_register(*, root_url: str) -> DemoFleetOutcome:
    """Register the demo fleet against the simulator at `root_url` if the registry is empty and demos are on.

    One transaction: two simulators starting at once register one fleet (the
    loser's unique instance names conflict and its whole batch rolls back).
    """
    if not settings.DEMO_FLEET:
        return DemoFleetOutcome([], "demo fleet off (INSTANCE_MANAGER_DEMO=false); the registry is left alone")
    existing = AIInstance.objects.count()
    if existing:
        return DemoFleetOutcome([], f"the registry already has {existing} instance(s); demo fleet not registered")
    try:
        with transaction.atomic():
            registered = [
                instance_register(
                    provider_type=demo.provider_type,
                    model_name=demo.model_name,
                    instance_name=demo.name,
                    endpoint_url=instance_base_url(root_url, demo.name, demo.provider_type),
                    api_key=DEMO_API_KEY,
                    region=demo.region,
                    tags=[DEMO_TAG, demo.provider_type],
                    metadata={"demo_scenario": demo.scenario},
                    **demo.options,
                )
                for demo in DEMO_FLEET
            ]
    except ConflictError:
        return DemoFleetOutcome([], "another process registered instances meanwhile; demo fleet not registered")
    return DemoFleetOutcome(
        registered,
        f"registered {len(registered)} demo instances (tag {DEMO_TAG!r}) on {root_url}; "
        "set INSTANCE_MANAGER_DEMO=false to start without them",
    )
