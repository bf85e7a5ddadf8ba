"""The registry's management commands: register, list, deregister, rotate the encryption key."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command

from instances import services
from instances.choices import InstanceStatus
from instances.management.commands.rotate_encryption_key import Command as RotateCommand
from instances.models import AIInstance, StatusTransition
from ishchat import crypto
from scaling.models import ProviderGroup

pytestmark = pytest.mark.django_db

KEY = "provider-key-from-env-0000-abcd"
REQUIRED = ["--provider", "zai", "--model", "glm-4", "--name", "prod-1", "--endpoint", "http://127.0.0.1:8001/v1"]


def run(name: str, *args: Any, **options: Any) -> str:
    out = io.StringIO()
    call_command(name, *args, stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


def register(name: str, **changes: Any) -> AIInstance:
    fields = {
        "provider_type": "zai",
        "model_name": "glm-4",
        "instance_name": name,
        "endpoint_url": "http://127.0.0.1:8001/v1",
        "api_key": KEY,
        **changes,
    }
    return services.instance_register(**fields)


# --- register_instance ---------------------------------------------------------------------


def test_register_reads_the_key_from_an_env_var_and_prints_the_instance_id(monkeypatch):
    monkeypatch.setenv("PROD_ZAI_KEY", KEY)
    group = ProviderGroup.objects.create(group_name="zai-prod", provider_type="zai")

    out = run(
        "register_instance",
        *REQUIRED,
        "--api-key-env",
        "PROD_ZAI_KEY",
        "--max-concurrent",
        "25",
        "--weight",
        "50",
        "--priority",
        "1",
        "--group",
        str(group.pk),
        "--region",
        "eu-west",
        "--tag",
        "prod",
        "--tag",
        "eu",
        "--timeout",
        "12.5",
    )

    stored = AIInstance.objects.get(instance_id=uuid.UUID(out.strip()))
    assert (stored.instance_name, stored.provider_type, stored.model_name, stored.status) == (
        "prod-1",
        "zai",
        "glm-4",
        InstanceStatus.STARTING,
    )
    assert (stored.max_concurrent_requests, stored.weight, stored.priority, stored.group_id) == (25, 50, 1, group.pk)
    assert (stored.region, stored.tags, stored.timeout) == ("eu-west", ["prod", "eu"], 12.5)
    assert crypto.decrypt(stored.api_key_encrypted) == KEY
    assert KEY not in out


def test_register_reads_the_key_from_stdin():
    out = run("register_instance", *REQUIRED, "--api-key-stdin", stdin=io.StringIO(f"{KEY}\n"))

    stored = AIInstance.objects.get()
    assert str(stored.instance_id) == out.strip()
    assert crypto.decrypt(stored.api_key_encrypted) == KEY


def test_register_without_a_key_uses_the_providers_env_key_later():
    run("register_instance", *REQUIRED)

    stored = AIInstance.objects.get()
    assert stored.api_key_encrypted == ""


def test_register_never_takes_the_key_as_an_argument_value():
    with pytest.raises(CommandError, match="unrecognized arguments"):
        run("register_instance", *REQUIRED, "--api-key", KEY)
    assert AIInstance.objects.count() == 0


@pytest.mark.parametrize(
    ("extra", "kwargs", "message"),
    [
        (["--api-key-env", "NOT_SET_ANYWHERE_123"], {}, "NOT_SET_ANYWHERE_123 is not set"),
        (["--api-key-stdin"], {"stdin": io.StringIO("\n")}, "no key on standard input"),
        (["--api-key-env", "X", "--api-key-stdin"], {}, "not allowed with argument"),
        (["--group", "999999"], {}, "group_id"),
        (["--weight", "-1"], {}, "weight"),
        (["--max-concurrent", "0"], {}, "max_concurrent_requests"),
        (["--timeout", "0"], {}, "timeout"),
        (["--weight", "lots"], {}, "invalid int value"),
    ],
)
def test_register_rejects_bad_input_with_a_clear_error_and_writes_nothing(extra, kwargs, message):
    with pytest.raises(CommandError, match=message):
        run("register_instance", *REQUIRED, *extra, **kwargs)
    assert AIInstance.objects.count() == 0


@pytest.mark.parametrize("endpoint", ["ftp://example.com/v1", "http://169.254.169.254/latest", "http://[fe80::1]/v1"])
def test_register_refuses_bad_endpoints(endpoint):
    args = [*REQUIRED[:-1], endpoint]
    with pytest.raises(CommandError, match="endpoint_url"):
        run("register_instance", *args)
    assert AIInstance.objects.count() == 0


def test_register_refuses_an_unknown_provider():
    args = ["--provider", "mistral", *REQUIRED[2:]]
    with pytest.raises(CommandError, match="invalid choice"):
        run("register_instance", *args)


def test_register_refuses_a_duplicate_active_name():
    register("prod-1")

    with pytest.raises(CommandError, match="already exists"):
        run("register_instance", *REQUIRED)
    assert AIInstance.objects.count() == 1


def test_a_failing_command_exits_non_zero_with_the_message_on_stderr():
    """The real process: CommandError becomes exit status 1 (validation fails before any query)."""
    manage = Path(django_settings.BASE_DIR) / "manage.py"
    result = subprocess.run(
        [sys.executable, str(manage), "register_instance", *REQUIRED[:-1], "ftp://example.com/v1"],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=60,
        check=False,
    )

    assert result.returncode == 1
    assert "endpoint_url" in result.stderr
    assert result.stdout == ""


# --- list_instances --------------------------------------------------------------------------


def test_list_prints_a_table_of_active_instances():
    first = register("zai-1", max_concurrent_requests=10)
    services.instance_set_load(instance=first, current_load=3)
    AIInstance.objects.filter(pk=first.pk).update(health_score=0.875)
    register("oa-1", provider_type="openai", model_name="gpt-4o")
    services.instance_deregister(instance=register("gone"), actor="test")

    lines = run("list_instances").splitlines()

    assert lines[0].split() == ["NAME", "INSTANCE", "ID", "PROVIDER/MODEL", "STATUS", "LOAD/CAP", "SCORE"]
    assert len(lines) == 3
    assert lines[1].split() == ["zai-1", str(first.instance_id), "zai/glm-4", "starting", "3/10", "0.88"]
    assert lines[2].split()[0] == "oa-1"
    assert lines[2].split()[-1] == "-"


def test_list_filters_by_provider_and_status_and_all_includes_deregistered():
    register("zai-1")
    parked = register("zai-2")
    services.instance_set_operator_status(instance=parked, status=InstanceStatus.MAINTENANCE, actor="test")
    register("oa-1", provider_type="openai", model_name="gpt-4o")
    services.instance_deregister(instance=register("gone"), actor="test")

    def names(*args: str) -> list[str]:
        return [line.split()[0] for line in run("list_instances", *args).splitlines()[1:]]

    assert names("--provider", "openai") == ["oa-1"]
    assert names("--status", "maintenance") == ["zai-2"]
    assert names("--all") == ["zai-1", "zai-2", "oa-1", "gone"]
    assert "deregistered" in run("list_instances", "--all").splitlines()[-1]


def test_list_json_has_the_public_fields_and_no_key():
    instance = register("zai-1")

    rows = json.loads(run("list_instances", "--json"))

    assert [row["instance_id"] for row in rows] == [str(instance.instance_id)]
    assert rows[0]["api_key_set"] is True
    assert rows[0]["api_key_last4"] == "abcd"
    assert not {"api_key", "api_key_encrypted"} & set(rows[0])
    assert instance.api_key_encrypted not in json.dumps(rows)


def test_list_says_so_when_there_is_nothing_and_rejects_unknown_filters():
    assert run("list_instances").strip() == "No instances."
    assert json.loads(run("list_instances", "--json")) == []
    with pytest.raises(CommandError, match="invalid choice"):
        run("list_instances", "--status", "sleepy")


# --- deregister_instance -------------------------------------------------------------------------


def test_deregister_with_yes_stops_routing_and_records_the_transition():
    instance = register("zai-1")

    out = run("deregister_instance", str(instance.instance_id), "--yes")

    stored = AIInstance.objects.get()
    assert (stored.is_active, stored.status) == (False, InstanceStatus.STOPPED)
    transition = StatusTransition.objects.get()
    assert (transition.old_status, transition.new_status) == (InstanceStatus.STARTING, InstanceStatus.STOPPED)
    assert "Deregistered zai-1" in out


def test_deregister_asks_and_only_yes_goes_ahead():
    instance = register("zai-1")

    with pytest.raises(CommandError, match="Cancelled"):
        run("deregister_instance", str(instance.instance_id), stdin=io.StringIO("no\n"))
    assert AIInstance.objects.get().is_active

    run("deregister_instance", str(instance.instance_id), stdin=io.StringIO("yes\n"))
    assert not AIInstance.objects.get().is_active


def test_deregister_without_a_terminal_needs_yes(monkeypatch):
    instance = register("zai-1")
    monkeypatch.setattr(sys, "stdin", io.StringIO("yes\n"))

    with pytest.raises(CommandError, match="--yes"):
        run("deregister_instance", str(instance.instance_id))
    assert AIInstance.objects.get().is_active


@pytest.mark.parametrize("instance_id", [str(uuid.uuid4()), "not-a-uuid"])
def test_deregister_an_unknown_id_is_an_error(instance_id):
    with pytest.raises(CommandError, match="No instance"):
        run("deregister_instance", instance_id, "--yes")


def test_deregistering_twice_changes_nothing_the_second_time():
    instance = register("zai-1")
    run("deregister_instance", str(instance.instance_id), "--yes")

    out = run("deregister_instance", str(instance.instance_id), "--yes")

    assert "already deregistered" in out
    assert StatusTransition.objects.count() == 1


# --- rotate_encryption_key -------------------------------------------------------------------------


def test_rotation_re_encrypts_every_stored_key_with_the_first_key(settings):
    old_key = settings.FIELD_ENCRYPTION_KEYS[0]
    first, second = register("a"), register("b", api_key="another-provider-key-9999")
    register("keyless", api_key=None)
    new_key = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]

    out = run("rotate_encryption_key")

    assert "Re-encrypted 2 stored provider keys" in out
    settings.FIELD_ENCRYPTION_KEYS = [new_key]  # the old key is dropped
    tokens = {i.instance_name: i.api_key_encrypted for i in AIInstance.objects.all()}
    assert tokens["a"] != first.api_key_encrypted
    assert crypto.decrypt(tokens["a"]) == KEY
    assert crypto.decrypt(tokens["b"]) == "another-provider-key-9999"
    assert tokens["keyless"] == ""
    assert second.api_key_encrypted != tokens["b"]


def test_rotation_stops_with_an_error_when_a_stored_key_cannot_be_decrypted(settings):
    register("a")
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # the old key dropped too early

    with pytest.raises(CommandError, match="cannot be decrypted"):
        run("rotate_encryption_key")


def test_rotation_needs_a_configured_key(settings):
    settings.FIELD_ENCRYPTION_KEYS = []
    with pytest.raises(CommandError, match="not set"):
        run("rotate_encryption_key")


def test_rotation_with_a_single_key_says_how_to_rotate(settings):
    register("a")
    out = run("rotate_encryption_key")
    assert "Re-encrypted 1 stored provider key " in out
    assert "prepend" in out


def test_rotation_help_documents_the_procedure():
    help_text = RotateCommand().create_parser("manage.py", "rotate_encryption_key").format_help()

    assert "FIELD_ENCRYPTION_KEY=<new>,<old>" in help_text
    assert "Drop the old key" in help_text
