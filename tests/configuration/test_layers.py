"""Where values come from: runtime > environment > file > defaults, and loud errors for bad sources."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from configuration.checks import configuration_check
from configuration.layers import env_layer, file_layer
from configuration.models import RuntimeSetting
from configuration.selectors import config_sources, config_value, effective_config
from configuration.services import config_update

pytestmark = pytest.mark.django_db


def test_each_layer_wins_over_the_ones_below(config_file: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    config_file({"load_balancer": {"strategy": "weighted", "health_check_interval": 20, "max_failover_attempts": 4}})
    monkeypatch.setenv("INSTANCE_MANAGER_LOAD_BALANCER__STRATEGY", "random")
    monkeypatch.setenv("INSTANCE_MANAGER_LOAD_BALANCER__HEALTH_CHECK_INTERVAL", "15")
    config_update(changes={"load_balancer": {"strategy": "round_robin"}}, updated_by="test")

    lb = effective_config()["load_balancer"]
    sources = config_sources()

    assert (lb["strategy"], sources["load_balancer.strategy"]) == ("round_robin", "runtime")
    assert (lb["health_check_interval"], sources["load_balancer.health_check_interval"]) == (15, "env")
    assert (lb["max_failover_attempts"], sources["load_balancer.max_failover_attempts"]) == (4, "file")
    assert (lb["healthy_threshold"], sources["load_balancer.healthy_threshold"]) == (2, "default")


def test_removing_the_runtime_override_falls_back_to_the_environment(
    config_file: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_file({"load_balancer": {"strategy": "weighted"}})
    monkeypatch.setenv("INSTANCE_MANAGER_LOAD_BALANCER__STRATEGY", "random")
    config_update(changes={"load_balancer": {"strategy": "round_robin"}}, updated_by="test")

    config_update(changes={"load_balancer": {"strategy": None}}, updated_by="test")

    assert config_value("load_balancer.strategy") == "random"
    assert config_sources()["load_balancer.strategy"] == "env"


def test_sources_cover_every_leaf_and_nothing_else(no_config_file: Path) -> None:
    sources = config_sources()
    assert set(sources.values()) == {"default"}
    assert "load_balancer.breaker.open_seconds" in sources
    assert "load_balancer.breaker" not in sources
    assert sources["pricing"] == "default"  # an empty map is reported as itself


def test_the_shipped_seed_file_is_valid(settings: Any) -> None:
    settings.CONFIG_FILE = Path(django_settings.BASE_DIR) / "config" / "instance_manager_config.json"
    assert config_value("providers.zai.rate_limits.requests_per_minute") == 60
    assert config_value("providers.zai.rate_limits.tokens_per_minute") == 10000
    assert config_value("providers.zai.default_models") == ["glm-4", "glm-4-coding-max"]
    assert config_sources()["providers.zai.rate_limits.tokens_per_minute"] == "file"


def test_a_relative_config_path_is_taken_from_the_project_root(settings: Any) -> None:
    settings.CONFIG_FILE = Path("config/instance_manager_config.json")
    assert config_sources()["providers.zai.rate_limits.requests_per_minute"] == "file"


def test_a_yaml_file_is_read_like_json(config_file: Any) -> None:
    config_file(
        "load_balancer:\n  strategy: least_connections\n  model_aliases:\n    fast: [glm-4, gpt-4o-mini]\n"
        "pricing:\n  gpt-4.1:\n    input_per_1k: 0.002\n",
        name="config.yaml",
    )
    assert config_value("load_balancer.strategy") == "least_connections"
    assert config_value("load_balancer.model_aliases.fast") == ["glm-4", "gpt-4o-mini"]
    assert config_value("pricing.gpt-4.1") == {"input_per_1k": 0.002, "output_per_1k": 0.0}
    assert config_sources()["pricing.gpt-4.1.output_per_1k"] == "default"


def test_an_empty_yaml_file_means_defaults(config_file: Any) -> None:
    config_file("", name="config.yml")
    assert config_value("load_balancer.strategy") == "health_based"


def test_a_missing_file_means_defaults_and_is_logged(no_config_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="configuration.layers"):
        assert config_value("auto_scaling.max_instances") == 10
    assert str(no_config_file) in caplog.text


@pytest.mark.parametrize(
    ("text", "name", "message"),
    [
        ('{"load_balancer": ', "config.json", "invalid JSON at line 1"),
        ("load_balancer: [unclosed", "config.yaml", "invalid YAML"),
        ("[1, 2]", "config.json", "the top level must be an object"),
        ('{"load_balancer": {"strategy": "fastest"}}', "config.json", "load_balancer.strategy: must be one of"),
        ('{"load_balancr": {}}', "config.json", "load_balancr: unknown key"),
        ("strategy = 1", "config.toml", "unsupported file type"),
    ],
)
def test_a_bad_file_is_an_error_naming_the_file_and_the_bad_value(
    config_file: Any, text: str, name: str, message: str
) -> None:
    path = config_file(text, name=name)
    with pytest.raises(ImproperlyConfigured) as raised:
        config_value("load_balancer.strategy")
    assert str(path) in str(raised.value)
    assert message in str(raised.value)


def test_a_bad_file_fails_the_system_check(config_file: Any) -> None:
    config_file({"auto_scaling": {"min_instances": 5, "max_instances": 3}})
    [error] = configuration_check()
    assert error.id == "configuration.E001"
    assert "auto_scaling.max_instances: must be >= auto_scaling.min_instances (5), got 3" in error.msg
    with pytest.raises(SystemCheckError, match=r"configuration\.E001"):
        call_command("check")


def test_a_good_configuration_passes_the_system_check(config_file: Any) -> None:
    config_file({"load_balancer": {"strategy": "random"}})
    assert configuration_check() == []


def test_the_file_is_reread_when_it_changes(config_file: Any) -> None:
    path = config_file({"load_balancer": {"strategy": "random"}})
    assert file_layer()[("load_balancer", "strategy")] == "random"
    path.write_text('{"load_balancer": {"strategy": "weighted", "health_check_interval": 45}}')
    assert file_layer()[("load_balancer", "strategy")] == "weighted"


# --- Environment -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "raw", "path", "value"),
    [
        ("INSTANCE_MANAGER_LOAD_BALANCER__HEALTH_CHECK_INTERVAL", "15", ("load_balancer", "health_check_interval"), 15),
        (
            "INSTANCE_MANAGER_GLOBAL__INSTANCE_MANAGER__MAX_CONCURRENT_HEALTH_CHECKS",
            "20",
            ("global", "instance_manager", "max_concurrent_health_checks"),
            20,
        ),
        (
            "INSTANCE_MANAGER_PROVIDERS__ZAI__RATE_LIMITS__REQUESTS_PER_MINUTE",
            "120",
            ("providers", "zai", "rate_limits", "requests_per_minute"),
            120,
        ),
        (
            "INSTANCE_MANAGER_PROVIDERS__OPENAI__DEFAULT_MODELS",
            '["gpt-4o", "gpt-4o-mini"]',
            ("providers", "openai", "default_models"),
            ["gpt-4o", "gpt-4o-mini"],
        ),
        (
            "INSTANCE_MANAGER_LOAD_BALANCER__STRATEGY",
            "least_response_time",
            ("load_balancer", "strategy"),
            "least_response_time",
        ),
        ("INSTANCE_MANAGER_AUTO_SCALING__ENABLED", "false", ("auto_scaling", "enabled"), False),
        ("INSTANCE_MANAGER_AUTO_SCALING__SCALE_UP_THRESHOLD", "0.75", ("auto_scaling", "scale_up_threshold"), 0.75),
        (
            "INSTANCE_MANAGER_PROVIDERS__ZAI__RATE_LIMITS__TOKENS_PER_MINUTE",
            "null",
            ("providers", "zai", "rate_limits", "tokens_per_minute"),
            None,
        ),
        (
            "INSTANCE_MANAGER_LOAD_BALANCER__MODEL_ALIASES__FAST",
            '["glm-4", "gpt-4o"]',
            ("load_balancer", "model_aliases", "fast"),
            ["glm-4", "gpt-4o"],
        ),
        ("INSTANCE_MANAGER_DEBUG", "true", ("global", "instance_manager", "debug"), True),
        ("INSTANCE_MANAGER_DEBUG", "0", ("global", "instance_manager", "debug"), False),
        ("INSTANCE_MANAGER_LOG_LEVEL", "warning", ("global", "instance_manager", "log_level"), "WARNING"),
    ],
)
def test_an_environment_variable_sets_the_path_its_name_spells(name: str, raw: str, path: tuple, value: Any) -> None:
    assert env_layer({name: raw}) == {path: value}


def test_variables_without_a_double_underscore_are_not_configuration() -> None:
    environ = {
        "INSTANCE_MANAGER_HTTPS": "true",
        "INSTANCE_MANAGER_CONFIG": "/etc/x.json",
        "INSTANCE_MANAGER_ENDPOINT_ALLOWLIST": "10.0.0.0/8",
        "OTHER__LOAD_BALANCER__STRATEGY": "random",
    }
    assert env_layer(environ) == {}


def test_an_object_value_sets_a_whole_section_and_a_more_specific_variable_wins() -> None:
    environ = {
        "INSTANCE_MANAGER_LOAD_BALANCER__BREAKER__OPEN_SECONDS": "20",
        "INSTANCE_MANAGER_LOAD_BALANCER__BREAKER": '{"open_seconds": 10, "half_open_probes": 1}',
    }
    assert env_layer(environ) == {
        ("load_balancer", "breaker", "open_seconds"): 20,
        ("load_balancer", "breaker", "half_open_probes"): 1,
    }


def test_the_nested_spelling_wins_over_the_seed_shortcut() -> None:
    environ = {"INSTANCE_MANAGER_LOG_LEVEL": "DEBUG", "INSTANCE_MANAGER_GLOBAL__INSTANCE_MANAGER__LOG_LEVEL": "ERROR"}
    assert env_layer(environ) == {("global", "instance_manager", "log_level"): "ERROR"}


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("INSTANCE_MANAGER_LOAD_BALANCER__STRATEGYY", "random", "load_balancer.strategyy: unknown key"),
        ("INSTANCE_MANAGER_LOAD_BALANCER__HEALTH_CHECK_INTERVAL", "soon", "must be an integer, got 'soon'"),
        ("INSTANCE_MANAGER_PROVIDERS__BEDROCK__ENABLED", "true", "providers.bedrock: unknown key"),
        ("INSTANCE_MANAGER_LOAD_BALANCER____STRATEGY", "random", "empty key"),
        ("INSTANCE_MANAGER_LOAD_BALANCER___STRATEGY", "random", "unknown key '_strategy'"),
        ("INSTANCE_MANAGER_LOG_LEVEL", "chatty", "must be one of"),
    ],
)
def test_a_bad_variable_is_an_error_naming_it(name: str, raw: str, message: str) -> None:
    with pytest.raises(ImproperlyConfigured) as raised:
        env_layer({name: raw})
    assert name in str(raised.value)
    assert message in str(raised.value)


def test_a_bad_variable_fails_at_first_use(no_config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSTANCE_MANAGER_AUTO_SCALING__MAX_INSTANCES", "0")
    with pytest.raises(ImproperlyConfigured, match="INSTANCE_MANAGER_AUTO_SCALING__MAX_INSTANCES"):
        effective_config()


def test_provider_interval_follows_the_balancer_interval_unless_set(
    config_file: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_file({"providers": {"openai": {"health_check_interval": 90}}})
    monkeypatch.setenv("INSTANCE_MANAGER_LOAD_BALANCER__HEALTH_CHECK_INTERVAL", "15")
    assert config_value("providers.openai.health_check_interval") == 90
    assert config_value("providers.zai.health_check_interval") == 15
    assert config_sources()["providers.zai.health_check_interval"] == "env"


def test_a_stale_runtime_row_is_set_aside_not_fatal(no_config_file: Path) -> None:
    RuntimeSetting.objects.create(path="load_balancer.removed_key", value=1)
    RuntimeSetting.objects.create(path="load_balancer.strategy", value="fastest")
    RuntimeSetting.objects.create(path="load_balancer.healthy_threshold", value=4)

    assert config_value("load_balancer.strategy") == "health_based"
    assert config_value("load_balancer.healthy_threshold") == 4


def test_a_runtime_row_conflicting_with_a_changed_environment_is_set_aside(
    no_config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_update(changes={"auto_scaling": {"min_instances": 8}}, updated_by="test")
    monkeypatch.setenv("INSTANCE_MANAGER_AUTO_SCALING__MAX_INSTANCES", "5")
    from configuration.selectors import config_cache_clear, config_ignored_settings

    config_cache_clear()
    assert config_value("auto_scaling.min_instances") == 1
    assert config_value("auto_scaling.max_instances") == 5
    assert "auto_scaling.min_instances" in config_ignored_settings()
