"""A planted provider key never leaves the manager except as ciphertext.

The sentinel goes in through every door (the API, the admin, register_instance,
the environment) and is then searched for in every response, every log record
(captured at DEBUG, SQL included), the log files, the commands' output, the
exports and every column of every table. It is deliberately not shaped like
an `sk-...` token: the log redaction filter would mask that, and this test is
about the code never writing the key, not about the safety net catching it.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.contrib.sessions.models import Session
from django.core.management import call_command, get_commands
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.views.debug import SafeExceptionReporterFilter

from instances.models import AIInstance
from ishchat import crypto

pytestmark = pytest.mark.django_db

SENTINEL = "PLANTED-7f3a9c2e5b1d4f6a8c0e-PROVIDERKEY"
# The distinctive core: a partial or reformatted leak still contains it.
SENTINEL_CORE = "7f3a9c2e5b1d4f6a8c0e"
LIVENESS_MARKER = "secrets-test-liveness-3b9d"


class Evidence:
    """Everything the manager said while the test drove it, by source."""

    def __init__(self) -> None:
        self.chunks: list[tuple[str, str]] = []

    def add(self, source: str, text: str | bytes) -> None:
        self.chunks.append((source, text.decode("utf-8", "replace") if isinstance(text, bytes) else text))

    def response(self, source: str, response: Any) -> Any:
        self.add(f"{source} body", response.content)
        self.add(f"{source} headers", str(dict(response.headers)))
        return response

    def command(self, *args: Any, **options: Any) -> str:
        out, err = io.StringIO(), io.StringIO()
        call_command(*args, stdout=out, stderr=err, **options)
        self.add(f"manage.py {' '.join(map(str, args))}", out.getvalue() + err.getvalue())
        return out.getvalue()

    def leaks(self) -> list[str]:
        return [source for source, text in self.chunks if SENTINEL in text or SENTINEL_CORE in text]


def _log_files() -> dict[Path, int]:
    from django.conf import settings

    return {path: path.stat().st_size for path in Path(settings.LOG_DIR).glob("*.log*") if path.is_file()}


@contextmanager
def watching(caplog: pytest.LogCaptureFixture) -> Iterator[Evidence]:
    """Capture logs at DEBUG (SQL with its parameters too) and the log files' new bytes."""
    evidence = Evidence()
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django.db.backends")
    before = _log_files()
    with CaptureQueriesContext(connection) as queries:
        yield evidence
        logging.getLogger("instances").warning("liveness %s", LIVENESS_MARKER)
    evidence.add("SQL sent to the database", "\n".join(query["sql"] for query in queries.captured_queries))
    for record in caplog.records:
        evidence.add(f"log record {record.name}", f"{record.getMessage()} {vars(record)!r}")
    evidence.add("caplog text", caplog.text)
    for path in _log_files():
        data = path.read_bytes()
        start = before.get(path, 0)
        evidence.add(f"log file {path.name}", data[start:] if len(data) >= start else data)
    # The capture must be live, or a clean result would prove nothing.
    captured = "\n".join(text for source, text in evidence.chunks if source.startswith(("log", "caplog")))
    assert LIVENESS_MARKER in captured


def database_text() -> str:
    """Every value of every column of every table, as text (SQLite and PostgreSQL)."""
    values: list[str] = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            # The table names come from the database's own catalogue.
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            for row in cursor.fetchall():
                for value in row:
                    if isinstance(value, memoryview):
                        value = value.tobytes()
                    values.append(value.decode("latin-1") if isinstance(value, bytes) else str(value))
    # Session data is base64: decode it so a key stashed there would show.
    values.extend(json.dumps(session.get_decoded(), default=str) for session in Session.objects.all())
    return "\n".join(values)


def _admin_add_data(name: str, **overrides: Any) -> dict[str, Any]:
    return {
        "instance_name": name,
        "provider_type": "zai",
        "model_name": "glm-4",
        "endpoint_url": "http://127.0.0.1:8001/v1",
        "region": "",
        "group": "",
        "new_api_key": SENTINEL,
        "weight": "100",
        "priority": "0",
        "max_concurrent_requests": "10",
        "requests_per_minute": "",
        "tokens_per_minute": "",
        "temperature": "0.7",
        "max_tokens": "1000",
        "timeout": "30",
        "tags": "[]",
        "metadata": "{}",
        "_save": "Save",
        **overrides,
    }


def _admin_change_data(instance: AIInstance, **overrides: Any) -> dict[str, Any]:
    data = _admin_add_data(instance.instance_name, **{"new_api_key": "", **overrides})
    data.pop("provider_type")
    return data


@pytest.fixture
def operator(admin_user: Any) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def test_a_planted_provider_key_appears_nowhere_but_as_ciphertext(
    api_client, operator, registration, caplog, monkeypatch, settings
):
    monkeypatch.setenv("PLANTED_PROVIDER_KEY", SENTINEL)
    with watching(caplog) as evidence:
        # The API: register, read, change, report.
        created = evidence.response(
            "POST register",
            api_client.post(
                "/api/instances/register",
                {**registration, "instance_name": "api-sentinel", "api_key": SENTINEL},
                format="json",
            ),
        )
        assert created.status_code == 201, created.content
        instance_id = created.json()["instance_id"]
        refused = evidence.response(
            "POST register (bad endpoint)",
            api_client.post(
                "/api/instances/register",
                {**registration, "instance_name": "x", "api_key": SENTINEL, "endpoint_url": "ftp://x/v1"},
                format="json",
            ),
        )
        assert refused.status_code == 400
        evidence.response("GET list", api_client.get("/api/instances?include_inactive=true"))
        evidence.response("GET detail", api_client.get(f"/api/instances/{instance_id}"))
        patched = evidence.response(
            "PATCH",
            api_client.patch(
                f"/api/instances/{instance_id}", {"api_key": SENTINEL, "weight": 5, "status": "standby"}, format="json"
            ),
        )
        assert patched.status_code == 200, patched.content
        evidence.response("PUT load", api_client.put(f"/api/instances/{instance_id}/load?current_load=2"))
        evidence.response("GET status", api_client.get("/api/instances/status"))

        # The admin: add, a refused add, the change page, a new key, the changelist, history.
        added = evidence.response(
            "admin add",
            operator.post(reverse("admin:instances_aiinstance_add"), _admin_add_data("admin-sentinel"), follow=True),
        )
        assert added.status_code == 200
        refused_form = evidence.response(
            "admin add (bad endpoint)",
            operator.post(
                reverse("admin:instances_aiinstance_add"),
                _admin_add_data("admin-refused", endpoint_url="http://169.254.169.254/"),
            ),
        )
        assert refused_form.status_code == 200 and refused_form.context["adminform"].form.errors
        via_admin = AIInstance.objects.get(instance_name="admin-sentinel")
        via_api = AIInstance.objects.get(instance_name="api-sentinel")
        for instance in (via_admin, via_api):
            change_url = reverse("admin:instances_aiinstance_change", args=[instance.pk])
            evidence.response(f"admin change page {instance.instance_name}", operator.get(change_url))
            evidence.response(f"admin history {instance.instance_name}", operator.get(f"{change_url}history/"))
        rekeyed = evidence.response(
            "admin set new key",
            operator.post(
                reverse("admin:instances_aiinstance_change", args=[via_admin.pk]),
                _admin_change_data(via_admin, new_api_key=SENTINEL, weight="9"),
                follow=True,
            ),
        )
        assert rekeyed.status_code == 200
        evidence.response("admin changelist", operator.get(reverse("admin:instances_aiinstance_changelist")))

        # The commands, and every export there is.
        cli = ["register_instance", "--provider", "zai", "--model", "glm-4", "--endpoint", "http://127.0.0.1:8001/v1"]
        evidence.command(*cli, "--name", "cli-env", "--api-key-env", "PLANTED_PROVIDER_KEY")
        evidence.command(*cli, "--name", "cli-stdin", "--api-key-stdin", stdin=io.StringIO(SENTINEL))
        listed = json.loads(evidence.command("list_instances", "--json", "--all"))
        assert {row["instance_name"] for row in listed} >= {"api-sentinel", "admin-sentinel", "cli-env", "cli-stdin"}
        evidence.command("list_instances", "--all")
        evidence.command("dumpdata", "instances", "scaling", "admin")
        if "export_config" in get_commands():
            evidence.command("export_config")

    assert evidence.leaks() == []
    # Searching for the key finds nothing: no column holds it in plain text (the page echoes the
    # query, so this runs after the evidence is collected).
    search = operator.get(reverse("admin:instances_aiinstance_changelist"), {"q": SENTINEL_CORE})
    assert list(search.context["cl"].result_list) == []
    dump = database_text()
    assert "admin-sentinel" in dump and "cli-stdin" in dump  # the dump does read the rows
    assert SENTINEL not in dump and SENTINEL_CORE not in dump

    # Stored as ciphertext that does decrypt back, so a broken encryption fails here.
    stored = AIInstance.objects.filter(
        instance_name__in=["api-sentinel", "admin-sentinel", "cli-env", "cli-stdin"]
    ).order_by("instance_name")
    assert stored.count() == 4
    for instance in stored:
        assert instance.api_key_encrypted.startswith("gAAAA"), instance.instance_name  # a Fernet token
        assert crypto.decrypt(instance.api_key_encrypted) == SENTINEL
        assert instance.api_key_last4 == SENTINEL[-4:]

    # Rotation: prepend a new key, re-encrypt, drop the old one; the key still decrypts.
    old_key = settings.FIELD_ENCRYPTION_KEYS[0]
    new_key = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]
    tokens_before = {i.pk: i.api_key_encrypted for i in stored}
    rotation_out = io.StringIO()
    call_command("rotate_encryption_key", stdout=rotation_out)
    assert "Re-encrypted 4 " in rotation_out.getvalue()
    assert SENTINEL_CORE not in rotation_out.getvalue()
    settings.FIELD_ENCRYPTION_KEYS = [new_key]
    for instance in AIInstance.objects.filter(pk__in=tokens_before):
        assert instance.api_key_encrypted != tokens_before[instance.pk]
        assert crypto.decrypt(instance.api_key_encrypted) == SENTINEL
    settings.FIELD_ENCRYPTION_KEYS = [old_key]
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(AIInstance.objects.get(instance_name="cli-env").api_key_encrypted)
    assert SENTINEL_CORE not in database_text()


def test_a_provider_key_from_the_environment_is_never_shown_either(
    api_client, operator, registration, caplog, settings
):
    settings.PROVIDER_API_KEYS = {**settings.PROVIDER_API_KEYS, "zai": SENTINEL}
    with watching(caplog) as evidence:
        created = api_client.post(
            "/api/instances/register", {**registration, "api_key": "", "instance_name": "env-keyed"}, format="json"
        )
        evidence.response("POST register", created)
        assert created.json()["api_key_source"] == "environment"
        evidence.response("GET detail", api_client.get(f"/api/instances/{created.json()['instance_id']}"))
        evidence.response("GET list", api_client.get("/api/instances"))
        evidence.response("GET config", api_client.get("/api/config"))
        instance = AIInstance.objects.get()
        page = evidence.response(
            "admin change page", operator.get(reverse("admin:instances_aiinstance_change", args=[instance.pk]))
        )
        assert "from ZAI_API_KEY env" in page.content.decode()
        evidence.command("list_instances", "--json")
        if "export_config" in get_commands():
            evidence.command("export_config")

    assert evidence.leaks() == []
    assert SENTINEL_CORE not in database_text()


def test_the_admin_key_field_is_masked_in_error_reports(operator):
    """Django's error reports (mail to ADMINS, the DEBUG page) list POST data; not this field."""
    response = operator.post(reverse("admin:instances_aiinstance_add"), _admin_add_data("masked"))

    parameters = SafeExceptionReporterFilter().get_post_parameters(response.wsgi_request)
    assert parameters["new_api_key"] != SENTINEL
    assert set(parameters["new_api_key"]) == {"*"}
    assert parameters["instance_name"] == "masked"
