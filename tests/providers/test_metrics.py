"""vLLM's Prometheus gauges read through the openai_compatible adapter."""

from __future__ import annotations

import pytest

from instances.providers import ServerMetrics, adapter_for
from instances.providers.openai_compatible import metrics_url, parse_vllm_metrics
from simulator.testing import SimulatorClient

from .support import call, target_for

compatible = adapter_for("openai_compatible")


def test_server_metrics_reads_the_queue_at_the_server_root(sim_server: SimulatorClient) -> None:
    sim_server.configure("vllm", vllm_running=3, vllm_waiting=7, vllm_kv_cache_usage=0.42)
    target = target_for(sim_server, "vllm", "openai_compatible")

    metrics = call(lambda client: compatible.server_metrics(client, target))

    assert isinstance(metrics, ServerMetrics)
    assert (metrics.num_requests_running, metrics.num_requests_waiting, metrics.gpu_cache_usage_perc) == (
        3.0,
        7.0,
        0.42,
    )
    assert sim_server.stats("vllm")["by_endpoint"] == {"metrics": 1}


def test_a_server_without_metrics_gives_none(sim_server: SimulatorClient) -> None:
    sim_server.configure("ollama", metrics_enabled=False)
    target = target_for(sim_server, "ollama", "openai_compatible")

    assert call(lambda client: compatible.server_metrics(client, target)) is None
    assert sim_server.stats("ollama")["by_status"] == {"404": 1}


@pytest.mark.parametrize("provider", ["openai", "zai", "perplexity", "anthropic"])
def test_hosted_providers_have_no_server_metrics_and_are_not_asked(sim_server: SimulatorClient, provider: str) -> None:
    target = target_for(sim_server, "hosted", provider)

    assert call(lambda client: adapter_for(provider).server_metrics(client, target)) is None
    assert sim_server.stats("hosted")["total"] == 0


@pytest.mark.parametrize(
    ("endpoint_url", "expected"),
    [
        ("http://gpu-1:8000/v1", "http://gpu-1:8000/metrics"),
        ("http://gpu-1:8000/v1/", "http://gpu-1:8000/metrics"),
        ("http://gpu-1:8000", "http://gpu-1:8000/metrics"),
        ("https://llm.internal/team-a/v1", "https://llm.internal/team-a/metrics"),
    ],
)
def test_metrics_live_beside_the_api_base(endpoint_url: str, expected: str) -> None:
    assert metrics_url(endpoint_url) == expected


def test_parsing_sums_queues_across_engines_and_takes_the_fullest_cache() -> None:
    text = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="meta/llama 3 {8b}"} 2.0
vllm:num_requests_running{engine="1",model_name="meta/llama 3 {8b}"} 1.0
vllm:num_requests_waiting{engine="0",model_name="meta/llama 3 {8b}"} 4.0 1712345678000
vllm:gpu_cache_usage_perc{engine="0"} 0.25
vllm:gpu_cache_usage_perc{engine="1"} 0.75
vllm:num_requests_running_total 99
vllm:prompt_tokens_total{model_name="x"} 12345.0
"""

    assert parse_vllm_metrics(text) == (3.0, 4.0, 0.75)


def test_parsing_reports_missing_gauges_as_none_and_non_vllm_text_as_none() -> None:
    assert parse_vllm_metrics("vllm:num_requests_waiting 0\nvllm:kv_cache_usage_perc NaN\n") == (None, 0.0, None)
    assert parse_vllm_metrics("# only comments\nprocess_cpu_seconds_total 3.2\n") is None
