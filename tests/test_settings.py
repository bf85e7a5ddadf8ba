"""Start-up configuration, checked the way an operator meets it: by running manage.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    dropped = ("SECRET_KEY", "INSTANCE_MANAGER_", "DATABASE_URL")
    base = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    base.update(INSTANCE_MANAGER_DOTENV="false", **env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=base, capture_output=True, text=True, timeout=120
    )


SECRETS = {
    "SECRET_KEY": "a-long-random-secret-key-for-this-test-only-0123456789-abcdefghijklmnop",
    "FIELD_ENCRYPTION_KEY": "Zm9yLXRlc3RzLW9ubHktMzItYnl0ZXMta2V5LTAwMDA=",
    "BACKEND_API_KEY": "a-backend-api-key-long-enough-0123456789",
}


def test_a_missing_secret_key_is_a_clear_start_up_error():
    result = manage("check", FIELD_ENCRYPTION_KEY=SECRETS["FIELD_ENCRYPTION_KEY"])

    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_check_deploy_is_clean_with_https_on():
    result = manage("check", "--deploy", "--fail-level", "WARNING", INSTANCE_MANAGER_HTTPS="true", **SECRETS)

    assert result.returncode == 0, result.stdout + result.stderr


def test_check_deploy_warns_without_https():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **SECRETS)

    assert result.returncode != 0
    assert "INSTANCE_MANAGER_HTTPS" in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FIELD_ENCRYPTION_KEY": "not-a-fernet-key"}, "not a Fernet key"),
        ({"INSTANCE_MANAGER_DEBUG": "maybe"}, "INSTANCE_MANAGER_DEBUG must be true or false"),
        ({"BACKEND_PORT": "eighty"}, "BACKEND_PORT must be an integer"),
    ],
)
def test_bad_values_fail_loudly(env, message):
    result = manage("check", **{**SECRETS, **env})

    assert result.returncode != 0
    assert message in result.stderr + result.stdout


def test_logs_are_json_lines_on_stdout():
    code = "import logging; logging.getLogger('probe').warning('marker-%s', 42)"
    result = manage("shell", "-c", code, **SECRETS)

    line = next(line for line in result.stdout.splitlines() if "marker-42" in line)
    record = json.loads(line)
    assert (record["level"], record["logger"], record["message"]) == ("WARNING", "probe", "marker-42")


def test_data_commands_keep_stdout_for_data_and_log_to_stderr():
    result = manage("export_config", "--format", "json", INSTANCE_MANAGER_CONFIG="/nonexistent/config.json", **SECRETS)

    assert result.returncode == 0, result.stderr
    assert "load_balancer" in json.loads(result.stdout)
    assert "nonexistent" in result.stderr
