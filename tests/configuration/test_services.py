"""Runtime changes: validated as a whole, written all or nothing, nulls revert."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from configuration.models import RuntimeSetting
from configuration.selectors import config_runtime_overrides, config_sources, config_value
from configuration.services import (
    config_import,
    config_update,
    config_validate,
    runtime_setting_set,
    runtime_settings_remove,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _defaults_only(no_config_file: Path) -> None:
    """Start from built-in defaults so every expectation below is explicit."""


def test_it_stores_each_changed_leaf_as_a_row_and_returns_the_effective_tree() -> None:
    effective = config_update(
        changes={"load_balancer": {"strategy": "weighted", "breaker": {"open_seconds": 10}}},
        updated_by="api:ops",
    )
    assert effective["load_balancer"]["strategy"] == "weighted"
    assert effective["load_balancer"]["breaker"]["open_seconds"] == 10
    assert config_runtime_overrides() == {
        "load_balancer.breaker.open_seconds": 10,
        "load_balancer.strategy": "weighted",
    }
    assert set(RuntimeSetting.objects.values_list("updated_by", flat=True)) == {"api:ops"}


def test_a_null_removes_the_override_and_everything_below_it() -> None:
    config_update(
        changes={"load_balancer": {"strategy": "weighted", "breaker": {"open_seconds": 10, "min_calls": 20}}},
        updated_by="t",
    )
    config_update(changes={"load_balancer": {"breaker": None}}, updated_by="t")
    assert config_runtime_overrides() == {"load_balancer.strategy": "weighted"}
    assert config_value("load_balancer.breaker.open_seconds") == 30


def test_a_bad_change_raises_errors_by_path_and_writes_nothing() -> None:
    config_update(changes={"load_balancer": {"strategy": "weighted"}}, updated_by="t")
    with pytest.raises(ValidationError) as raised:
        config_update(
            changes={
                "load_balancer": {"strategy": "fastest", "healthy_threshold": 4},
                "auto_scaling": {"max_instances": 0},
                "typo": True,
            },
            updated_by="t",
        )
    assert set(raised.value.message_dict) == {"load_balancer.strategy", "auto_scaling.max_instances", "typo"}
    assert raised.value.message_dict["load_balancer.strategy"] == [
        "must be one of ['round_robin', 'weighted', 'least_connections', 'least_response_time', 'random', "
        "'health_based', 'power_of_two'], got 'fastest'"
    ]
    assert config_runtime_overrides() == {"load_balancer.strategy": "weighted"}


@pytest.mark.parametrize(
    ("changes", "path", "message"),
    [
        (
            {"auto_scaling": {"min_instances": 20}},
            "auto_scaling.max_instances",
            "must be >= auto_scaling.min_instances",
        ),
        (
            {"auto_scaling": {"scale_down_threshold": 0.9}},
            "auto_scaling.scale_up_threshold",
            "must be > auto_scaling.scale_down_threshold (0.9), got 0.8",
        ),
        (
            {"load_balancer": {"breaker": {"open_seconds": 600}}},
            "load_balancer.breaker.max_open_seconds",
            "must be >= load_balancer.breaker.open_seconds (600), got 300",
        ),
        (
            {"monitoring": {"alert_thresholds": {"error_rate_warning": 50}}},
            "monitoring.alert_thresholds.error_rate_critical",
            "must be >= monitoring.alert_thresholds.error_rate_warning",
        ),
    ],
)
def test_cross_field_rules_apply_to_the_resulting_tree(changes: dict, path: str, message: str) -> None:
    with pytest.raises(ValidationError) as raised:
        config_update(changes=changes, updated_by="t")
    assert message in raised.value.message_dict[path][0]
    assert config_runtime_overrides() == {}


def test_a_change_that_fixes_both_sides_of_a_rule_at_once_is_accepted() -> None:
    config_update(changes={"auto_scaling": {"min_instances": 20, "max_instances": 40}}, updated_by="t")
    assert (config_value("auto_scaling.min_instances"), config_value("auto_scaling.max_instances")) == (20, 40)


def test_the_changes_must_be_an_object() -> None:
    with pytest.raises(ValidationError) as raised:
        config_update(changes=["load_balancer"], updated_by="t")  # type: ignore[arg-type]
    assert "non_field_errors" in raised.value.message_dict


def test_validate_previews_without_writing() -> None:
    preview = config_validate(changes={"pricing": {"gpt-4.1": {"input_per_1k": 0.002}}})
    assert preview["pricing"] == {"gpt-4.1": {"input_per_1k": 0.002, "output_per_1k": 0.0}}
    assert config_runtime_overrides() == {}


def test_map_entries_with_dots_round_trip_through_rows() -> None:
    config_update(
        changes={
            "pricing": {"gpt-4.1": {"input_per_1k": 0.002, "output_per_1k": 0.008}},
            "load_balancer": {"model_aliases": {"claude-3.5": ["claude-3-5-sonnet", "glm-4"]}},
        },
        updated_by="t",
    )
    assert config_value("pricing.gpt-4.1.output_per_1k") == 0.008
    assert config_value("load_balancer.model_aliases.claude-3.5") == ["claude-3-5-sonnet", "glm-4"]
    assert config_sources()["pricing.gpt-4.1.input_per_1k"] == "runtime"

    config_update(changes={"pricing": {"gpt-4.1": None}}, updated_by="t")
    assert config_value("pricing") == {}


def test_set_and_remove_one_setting_by_path() -> None:
    row = runtime_setting_set(path="health_checks.latency_samples", value=5, updated_by="admin:root")
    assert (row.path, row.value, row.updated_by) == ("health_checks.latency_samples", 5, "admin:root")

    with pytest.raises(ValidationError) as raised:
        runtime_setting_set(path="health_checks.latency_samples", value=50, updated_by="admin:root")
    assert "must be between 1 and 20, got 50" in raised.value.message_dict["health_checks.latency_samples"][0]

    with pytest.raises(ValidationError):
        runtime_setting_set(path="health_checks", value={"latency_samples": 4}, updated_by="admin:root")

    change = runtime_settings_remove(paths=["health_checks.latency_samples"], updated_by="admin:root")
    assert change.removed == ["health_checks.latency_samples"]
    assert config_value("health_checks.latency_samples") == 3


def test_removing_an_override_that_a_rule_needs_is_refused() -> None:
    config_update(changes={"auto_scaling": {"min_instances": 20, "max_instances": 40}}, updated_by="t")
    with pytest.raises(ValidationError):
        runtime_settings_remove(paths=["auto_scaling.max_instances"], updated_by="t")
    assert config_value("auto_scaling.max_instances") == 40


def test_a_row_whose_path_no_longer_exists_can_still_be_removed() -> None:
    RuntimeSetting.objects.create(path="load_balancer.retired_key", value=1)
    runtime_settings_remove(paths=["load_balancer.retired_key"], updated_by="t")
    assert config_runtime_overrides() == {}


# --- Import --------------------------------------------------------------------


def test_import_stores_only_what_differs_from_env_file_and_defaults(config_file: Any) -> None:
    config_file({"load_balancer": {"strategy": "weighted"}})
    change = config_import(
        data={
            "load_balancer": {"strategy": "weighted", "healthy_threshold": 2, "unhealthy_threshold": 5},
            "providers": {"zai": {"rate_limits": {"requests_per_minute": None}}},
        },
        updated_by="cli:test",
    )
    assert change.written == ["load_balancer.unhealthy_threshold"]
    assert config_runtime_overrides() == {"load_balancer.unhealthy_threshold": 5}


def test_import_of_a_value_equal_to_the_base_drops_the_override() -> None:
    config_update(changes={"load_balancer": {"healthy_threshold": 4}}, updated_by="t")
    change = config_import(data={"load_balancer": {"healthy_threshold": 2}}, updated_by="cli:test")
    assert change.removed == ["load_balancer.healthy_threshold"]
    assert config_runtime_overrides() == {}


def test_import_keeps_other_overrides_unless_replacing() -> None:
    config_update(
        changes={"load_balancer": {"healthy_threshold": 4}, "monitoring": {"retention_days": 7}}, updated_by="t"
    )

    config_import(data={"monitoring": {"retention_days": 14}}, updated_by="cli:test")
    assert config_runtime_overrides() == {"load_balancer.healthy_threshold": 4, "monitoring.retention_days": 14}

    config_import(data={"monitoring": {"retention_days": 14}}, updated_by="cli:test", replace=True)
    assert config_runtime_overrides() == {"monitoring.retention_days": 14}


def test_import_of_an_invalid_document_writes_nothing() -> None:
    config_update(changes={"load_balancer": {"healthy_threshold": 4}}, updated_by="t")
    for data in (
        {"load_balancer": {"healthy_threshold": 0}},
        {"auto_scaling": {"min_instances": 50}},
        {"load_balancer": {"unknown": 1}},
    ):
        with pytest.raises(ValidationError):
            config_import(data=data, updated_by="cli:test", replace=True)
    assert config_runtime_overrides() == {"load_balancer.healthy_threshold": 4}
