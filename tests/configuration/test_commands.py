"""export_config and import_config."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import ManagementUtility, call_command
from django.core.management.base import CommandError

from configuration.management.commands import export_config
from configuration.selectors import config_runtime_overrides, config_value, effective_config
from configuration.services import config_update

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _seed_file(config_file: Any) -> Path:
    return config_file({"providers": {"zai": {"rate_limits": {"requests_per_minute": 60, "tokens_per_minute": 10000}}}})


def _export(*args: str) -> str:
    out = StringIO()
    call_command("export_config", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_export_writes_the_effective_configuration_as_json_by_default() -> None:
    document = json.loads(_export())
    assert document == effective_config()
    assert document["providers"]["zai"]["rate_limits"]["tokens_per_minute"] == 10000


def test_export_writes_yaml_by_flag_or_file_extension(tmp_path: Path) -> None:
    assert yaml.safe_load(_export("--format", "yaml")) == effective_config()
    target = tmp_path / "out.yml"
    _export("--output", str(target))
    assert yaml.safe_load(target.read_text()) == effective_config()


def test_export_runtime_writes_only_the_overrides() -> None:
    config_update(
        changes={"load_balancer": {"strategy": "random"}, "pricing": {"gpt-4.1": {"input_per_1k": 0.002}}},
        updated_by="t",
    )
    assert json.loads(_export("--runtime")) == {
        "load_balancer": {"strategy": "random"},
        "pricing": {"gpt-4.1": {"input_per_1k": 0.002}},
    }


def test_export_redacts_secrets_but_not_token_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    # No key of today's schema is a secret; a later one (a webhook secret, a provider key) must not leak.
    tree = effective_config()
    tree["providers"]["zai"]["api_key"] = "sk-sentinel-0123456789"
    tree["monitoring"]["webhook_secret"] = "whsec-sentinel"
    monkeypatch.setattr(export_config, "effective_config", lambda: tree)

    text = _export()
    assert "sentinel" not in text
    document = json.loads(text)
    assert document["providers"]["zai"]["api_key"] == "[redacted]"
    assert document["providers"]["zai"]["rate_limits"]["tokens_per_minute"] == 10000


def test_an_export_imported_back_changes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "export.json"
    _export("--output", str(target))
    out = StringIO()
    call_command("import_config", str(target), stdout=out)
    assert config_runtime_overrides() == {}
    assert "0 set, 0 removed" in out.getvalue()


def test_import_stores_what_differs(tmp_path: Path) -> None:
    source = tmp_path / "import.yaml"
    source.write_text("load_balancer:\n  strategy: weighted\n  model_aliases:\n    fast: [glm-4, gpt-4o-mini]\n")
    out = StringIO()
    call_command("import_config", str(source), stdout=out)
    assert config_value("load_balancer.strategy") == "weighted"
    assert config_value("load_balancer.model_aliases.fast") == ["glm-4", "gpt-4o-mini"]
    assert "set     load_balancer.strategy" in out.getvalue()
    assert config_runtime_overrides().keys() == {"load_balancer.strategy", "load_balancer.model_aliases.fast"}


def test_import_replace_removes_other_overrides(tmp_path: Path) -> None:
    config_update(changes={"monitoring": {"retention_days": 7}}, updated_by="t")
    source = tmp_path / "import.json"
    source.write_text(json.dumps({"load_balancer": {"strategy": "weighted"}}))
    call_command("import_config", str(source), "--replace", stdout=StringIO())
    assert config_runtime_overrides() == {"load_balancer.strategy": "weighted"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"load_balancer": {"strategy": "fastest"}, "monitoring": {"retention_days": 1}}', "load_balancer.strategy"),
        ('{"auto_scaling": {"min_instances": 50}}', "auto_scaling.max_instances"),
        ('{"load_balancer": ', "invalid JSON"),
    ],
)
def test_import_of_a_bad_document_fails_and_writes_nothing(tmp_path: Path, text: str, message: str) -> None:
    config_update(changes={"monitoring": {"retention_days": 7}}, updated_by="t")
    source = tmp_path / "bad.json"
    source.write_text(text)
    err = StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("import_config", str(source), "--replace", stdout=StringIO(), stderr=err)
    assert message in err.getvalue() + str(raised.value)
    assert config_runtime_overrides() == {"monitoring.retention_days": 7}


def test_import_failure_exits_non_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "bad.json"
    source.write_text('{"typo": 1}')
    with pytest.raises(SystemExit) as raised:
        ManagementUtility(["manage.py", "import_config", str(source)]).execute()
    assert raised.value.code == 1
    assert "typo: unknown key 'typo'" in capsys.readouterr().err
