"""The schema table: defaults for every key, and clear messages for bad values."""

from __future__ import annotations

from typing import Any

import pytest

from configuration.schema import (
    SCHEMA,
    PathError,
    default_leaves,
    dotted,
    flatten,
    iter_leaves,
    json_schema,
    parse_path,
)

EXPECTED_DEFAULTS: dict[str, Any] = {
    "global.instance_manager.debug": False,
    "global.instance_manager.log_level": "INFO",
    "global.instance_manager.max_concurrent_health_checks": 10,
    "providers.openai.enabled": True,
    "providers.openai.default_models": [],
    "providers.openai.base_url": "https://api.openai.com/v1",
    "providers.zai.base_url": "https://open.bigmodel.cn/api/paas/v4",
    "providers.anthropic.base_url": "https://api.anthropic.com/v1",
    "providers.perplexity.base_url": "https://api.perplexity.ai",
    "providers.openai_compatible.base_url": None,
    "providers.zai.health_check_interval": None,
    "providers.zai.rate_limits.requests_per_minute": None,
    "providers.zai.rate_limits.tokens_per_minute": None,
    "load_balancer.strategy": "health_based",
    "load_balancer.health_check_interval": 30,
    "load_balancer.failover_enabled": True,
    "load_balancer.max_failover_attempts": 3,
    "load_balancer.healthy_threshold": 2,
    "load_balancer.unhealthy_threshold": 3,
    "load_balancer.min_health_score": 0.0,
    "load_balancer.session_affinity": True,
    "load_balancer.session_ttl_seconds": 3600,
    "load_balancer.breaker.failure_threshold": 5,
    "load_balancer.breaker.failure_rate": 0.5,
    "load_balancer.breaker.min_calls": 10,
    "load_balancer.breaker.open_seconds": 30,
    "load_balancer.breaker.max_open_seconds": 300,
    "load_balancer.breaker.half_open_probes": 3,
    "load_balancer.breaker.max_ejection_share": 0.5,
    "health_checks.jitter_seconds": 5,
    "health_checks.latency_interval": 300,
    "health_checks.load_interval": 60,
    "health_checks.comprehensive_interval": 900,
    "health_checks.latency_samples": 3,
    "auto_scaling.enabled": True,
    "auto_scaling.min_instances": 1,
    "auto_scaling.max_instances": 10,
    "auto_scaling.scale_up_threshold": 0.8,
    "auto_scaling.scale_down_threshold": 0.54,
    "auto_scaling.scale_up_cooldown": 0,
    "auto_scaling.scale_down_cooldown": 600,
    "auto_scaling.scale_down_stabilization_seconds": 300,
    "auto_scaling.evaluation_interval": 30,
    "monitoring.enabled": True,
    "monitoring.metrics_collection_interval": 60,
    "monitoring.alert_thresholds.response_time_warning": 2000,
    "monitoring.alert_thresholds.response_time_critical": 5000,
    "monitoring.alert_thresholds.error_rate_warning": 5.0,
    "monitoring.alert_thresholds.error_rate_critical": 10.0,
    "monitoring.retention_days": 30,
}


@pytest.mark.parametrize(("path", "expected"), EXPECTED_DEFAULTS.items())
def test_each_key_has_the_documented_default(path: str, expected: Any) -> None:
    assert default_leaves()[parse_path(path)] == expected


def test_every_provider_type_has_a_section() -> None:
    assert {path[1] for path in default_leaves() if path[0] == "providers"} == {
        "zai",
        "openai",
        "anthropic",
        "perplexity",
        "openai_compatible",
    }


def test_every_default_passes_its_own_validation() -> None:
    for path, leaf in iter_leaves():
        assert leaf.clean(leaf.default) == leaf.default, dotted(path)


@pytest.mark.parametrize(
    ("document", "path", "message"),
    [
        (
            {"load_balancer": {"strategy": "fastest"}},
            "load_balancer.strategy",
            "must be one of ['round_robin', 'weighted', 'least_connections', 'least_response_time', 'random', "
            "'health_based', 'power_of_two'], got 'fastest'",
        ),
        (
            {"global": {"instance_manager": {"max_concurrent_health_checks": 0}}},
            "global.instance_manager.max_concurrent_health_checks",
            "must be between 1 and 1000, got 0",
        ),
        (
            {"load_balancer": {"health_check_interval": "30"}},
            "load_balancer.health_check_interval",
            "must be an integer, got '30'",
        ),
        ({"load_balancer": {"failover_enabled": "yes"}}, "load_balancer.failover_enabled", "must be true or false"),
        (
            {"auto_scaling": {"scale_up_threshold": 0}},
            "auto_scaling.scale_up_threshold",
            "must be greater than 0.0 and at most 1.0, got 0",
        ),
        (
            {"load_balancer": {"strategyy": "random"}},
            "load_balancer.strategyy",
            "unknown key 'strategyy'; expected one of: strategy,",
        ),
        ({"providers": {"bedrock": {}}}, "providers.bedrock", "unknown key 'bedrock'"),
        ({"providers": {"zai": {"base_url": "ftp://x"}}}, "providers.zai.base_url", "must be an http(s) URL"),
        ({"providers": {"zai": {"default_models": ["a", ""]}}}, "providers.zai.default_models", "item 1"),
        ({"load_balancer": {"model_aliases": {"fast": []}}}, "load_balancer.model_aliases.fast", "at least 1"),
        ({"pricing": {"gpt-4o": {"input_per_1k": -1}}}, "pricing.gpt-4o.input_per_1k", "must be >= 0.0"),
        ({"pricing": {"gpt-4o": 3}}, "pricing.gpt-4o", "must be an object, got 3"),
        ({"monitoring": []}, "monitoring", "must be an object, got a list"),
        ({"global": {"instance_manager": {"log_level": None}}}, "global.instance_manager.log_level", "got null"),
    ],
)
def test_a_bad_value_gets_a_message_naming_its_path(document: dict, path: str, message: str) -> None:
    _, errors = flatten(document)
    assert path in errors, errors
    assert message in errors[path][0]


def test_all_errors_of_a_document_are_reported_together() -> None:
    _, errors = flatten({"load_balancer": {"strategy": "x", "healthy_threshold": -1}, "nope": 1})
    assert set(errors) == {"load_balancer.strategy", "load_balancer.healthy_threshold", "nope"}


def test_free_maps_take_any_key_and_validate_the_value() -> None:
    leaves, errors = flatten(
        {
            "load_balancer": {"model_aliases": {"fast": ["glm-4", "gpt-4o-mini"]}},
            "pricing": {"gpt-4.1": {"input_per_1k": 0.002, "output_per_1k": 0.008}},
        }
    )
    assert errors == {}
    assert leaves[("load_balancer", "model_aliases", "fast")] == ["glm-4", "gpt-4o-mini"]
    assert leaves[("pricing", "gpt-4.1", "output_per_1k")] == 0.008


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("load_balancer.strategy", ("load_balancer", "strategy")),
        ("pricing.gpt-4.1.input_per_1k", ("pricing", "gpt-4.1", "input_per_1k")),
        ("pricing.gpt-4.1", ("pricing", "gpt-4.1")),
        ("load_balancer.model_aliases.claude-3.5", ("load_balancer", "model_aliases", "claude-3.5")),
        ("providers.zai.rate_limits", ("providers", "zai", "rate_limits")),
    ],
)
def test_dotted_paths_are_split_by_the_schema_so_map_keys_may_hold_dots(text: str, expected: tuple) -> None:
    assert parse_path(text) == expected


@pytest.mark.parametrize(
    "text", ["load_balancer.strategyy", "providers.bedrock.enabled", "", "load_balancer.strategy.x"]
)
def test_a_path_the_schema_does_not_know_is_refused(text: str) -> None:
    with pytest.raises(PathError):
        parse_path(text)


def test_the_openapi_schema_mirrors_the_table() -> None:
    full = json_schema()
    strategy = full["properties"]["load_balancer"]["properties"]["strategy"]
    assert strategy["enum"][:2] == ["round_robin", "weighted"]
    assert full["properties"]["load_balancer"]["additionalProperties"] is False
    assert full["required"] == list(SCHEMA.fields)
    partial = json_schema(partial=True)
    assert "required" not in partial
    assert partial["properties"]["load_balancer"]["properties"]["strategy"]["nullable"] is True
