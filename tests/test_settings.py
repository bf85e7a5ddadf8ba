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


PG = "postgresql://postgres@127.0.0.1:5432/ishchat_settings_check"


def test_postgresql_uses_a_bounded_pool_sized_from_the_environment():
    code = (
        "import django, json; django.setup(); from django.conf import settings; d = settings.DATABASES['default'];"
        "print(json.dumps([d['CONN_MAX_AGE'], d['OPTIONS']['pool'], d['OPTIONS']['connect_timeout']]))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SECRET_KEY", "INSTANCE_MANAGER_", "DATABASE_URL"))}
    env.update(
        SECRETS,
        INSTANCE_MANAGER_DOTENV="false",
        DJANGO_SETTINGS_MODULE="ishchat.settings",
        DATABASE_URL=PG,
        INSTANCE_MANAGER_DB_POOL_MIN_SIZE="1",
        INSTANCE_MANAGER_DB_POOL_MAX_SIZE="3",
        INSTANCE_MANAGER_DB_POOL_TIMEOUT="7",
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    conn_max_age, pool, connect_timeout = json.loads(result.stdout)
    assert conn_max_age == 0  # persistent connections off under ASGI: the pool bounds them
    assert pool == {"min_size": 1, "max_size": 3, "timeout": 7}
    assert connect_timeout == 2


def test_a_pool_whose_minimum_exceeds_its_maximum_is_a_check_error():
    result = manage(
        "check",
        DATABASE_URL=PG,
        INSTANCE_MANAGER_DB_POOL_MIN_SIZE="9",
        INSTANCE_MANAGER_DB_POOL_MAX_SIZE="2",
        **SECRETS,
    )

    assert result.returncode != 0
    assert "ishchat.E003" in result.stderr + result.stdout
