"""The newcomer's path: scripts/write_env.py, `manage.py ensure_admin` and the Procfile."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from honcho.environ import parse as honcho_parse_env
from honcho.environ import parse_procfile

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WRITE_ENV = PROJECT_ROOT / "scripts" / "write_env.py"
GENERATED = ("SECRET_KEY", "FIELD_ENCRYPTION_KEY", "BACKEND_API_KEY")


def write_env(env_file: Path, example: Path = PROJECT_ROOT / ".env.example") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(WRITE_ENV), "--env-file", str(env_file), "--example", str(example)],
        capture_output=True,
        text=True,
        check=True,
    )


def read_env(env_file: Path) -> dict[str, str]:
    values = {}
    for line in env_file.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key] = value
    return values


def test_write_env_generates_the_three_secrets(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"

    result = write_env(env_file)

    values = read_env(env_file)
    Fernet(values["FIELD_ENCRYPTION_KEY"].encode())  # raises if not a Fernet key
    assert len(values["SECRET_KEY"]) >= 50
    assert len(values["BACKEND_API_KEY"]) >= 24
    assert "change-me" not in env_file.read_text()
    assert str(env_file) in result.stdout
    assert "BACKEND_API_KEY" in result.stdout
    assert values["BACKEND_API_KEY"] not in result.stdout


def test_write_env_keeps_the_rest_of_the_example(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"

    write_env(env_file)

    example = read_env(PROJECT_ROOT / ".env.example")
    written = read_env(env_file)
    assert written.keys() >= example.keys()
    assert {k: v for k, v in written.items() if k not in GENERATED} == {
        k: v for k, v in example.items() if k not in GENERATED
    }


def test_write_env_makes_the_file_readable_by_its_owner_only(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"

    write_env(env_file)

    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600


def test_write_env_never_overwrites_an_existing_env(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("SECRET_KEY=mine\n")

    result = write_env(env_file)

    assert env_file.read_text() == "SECRET_KEY=mine\n"
    assert "left unchanged" in result.stdout


def test_write_env_generates_new_secrets_each_time(tmp_path: Path) -> None:
    write_env(tmp_path / "one.env")
    write_env(tmp_path / "two.env")

    one, two = read_env(tmp_path / "one.env"), read_env(tmp_path / "two.env")
    assert all(one[key] != two[key] for key in GENERATED)


def test_write_env_adds_secrets_missing_from_the_example(tmp_path: Path) -> None:
    example = tmp_path / "example"
    example.write_text("BACKEND_PORT=8000\n")

    write_env(tmp_path / ".env", example=example)

    values = read_env(tmp_path / ".env")
    assert values["BACKEND_PORT"] == "8000"
    assert all(values[key] for key in GENERATED)


def test_generated_values_survive_honchos_env_parser(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    write_env(env_file)

    parsed = honcho_parse_env(env_file.read_text())

    assert all(parsed[key] == value for key, value in read_env(env_file).items() if value)


@pytest.mark.django_db
class TestEnsureAdmin:
    def run(self, monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
        for name in ("DJANGO_SUPERUSER_USERNAME", "DJANGO_SUPERUSER_PASSWORD", "DJANGO_SUPERUSER_EMAIL"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        out = StringIO()
        call_command("ensure_admin", stdout=out)
        return out.getvalue()

    def test_it_creates_admin_with_a_generated_password_it_prints_once(self, monkeypatch: pytest.MonkeyPatch) -> None:
        first = self.run(monkeypatch)

        admin = get_user_model().objects.get(username="admin")
        assert admin.is_superuser and admin.is_staff
        password = next(line.split(":", 1)[1].strip() for line in first.splitlines() if "Password:" in line)
        assert len(password) >= 20
        assert admin.check_password(password)

        second = self.run(monkeypatch)

        assert "admin user exists" in second
        assert password not in second

    def test_a_second_run_changes_nothing(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.run(monkeypatch, DJANGO_SUPERUSER_PASSWORD="first-password-1234")

        output = self.run(monkeypatch, DJANGO_SUPERUSER_PASSWORD="second-password-5678")

        assert "admin user exists" in output
        admin = get_user_model().objects.get(username="admin")
        assert admin.check_password("first-password-1234")
        assert get_user_model().objects.count() == 1

    def test_it_takes_the_password_from_the_environment_and_never_prints_it(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        output = self.run(monkeypatch, DJANGO_SUPERUSER_PASSWORD="from-the-env-1234")

        assert "from-the-env-1234" not in output
        assert get_user_model().objects.get(username="admin").check_password("from-the-env-1234")

    def test_it_takes_username_and_email_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.run(monkeypatch, DJANGO_SUPERUSER_USERNAME="ops", DJANGO_SUPERUSER_EMAIL="ops@example.com")

        user = get_user_model().objects.get()
        assert (user.username, user.email, user.is_superuser) == ("ops", "ops@example.com", True)

    def test_any_existing_superuser_counts(self, monkeypatch: pytest.MonkeyPatch) -> None:
        get_user_model().objects.create_superuser(username="root", password="x" * 20)

        output = self.run(monkeypatch)

        assert "admin user exists" in output
        assert not get_user_model().objects.filter(username="admin").exists()

    def test_it_refuses_to_promote_an_existing_ordinary_user(self, monkeypatch: pytest.MonkeyPatch) -> None:
        get_user_model().objects.create_user(username="admin", password="x" * 20)

        with pytest.raises(CommandError, match="not a superuser"):
            self.run(monkeypatch)

        assert not get_user_model().objects.filter(is_superuser=True).exists()


def test_procfile_runs_web_worker_and_beat() -> None:
    processes = parse_procfile((PROJECT_ROOT / "Procfile").read_text()).processes

    assert processes["web"].startswith("uvicorn ishchat.asgi:application ")
    assert processes["worker"].startswith("celery -A ishchat worker ")
    assert processes["beat"].startswith("celery -A ishchat beat ")


def test_write_env_script_needs_only_the_standard_library() -> None:
    # `make env` runs it with the system python3, before the virtualenv exists.
    result = subprocess.run(
        [sys.executable, "-I", "-S", str(WRITE_ENV), "--help"],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", "")},
    )
    assert result.returncode == 0, result.stderr
