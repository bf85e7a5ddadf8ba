"""manage.py simulate_scaling: a group's policy against a trace file or its own recorded traffic."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from scaling.engine.simulation import read_trace_csv
from tests.scaling.support import TRACKING, add_recorded_traffic, make_group, make_member

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("simulate_scaling", *args, stdout=out)
    return out.getvalue()


def step_csv(tmp_path: Path) -> Path:
    """An hour at 400 req/min, then an hour at 1,200 (ISO timestamps, one row a minute)."""
    start = timezone.now().replace(microsecond=0)
    lines = ["timestamp,requests_per_minute,queue_length"]
    lines += [f"{(start + timedelta(minutes=m)).isoformat()},{400 if m < 60 else 1200},0" for m in range(120)]
    path = tmp_path / "step.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_trace_file_is_replayed_against_the_group_policy_and_the_hpa_reference(tmp_path):
    group = make_group("sim-group", min_instances=2, max_instances=30, **TRACKING)

    out = run("--group", "sim-group", "--trace", str(step_csv(tmp_path)), "--capacity-rpm", "120", "--events")

    lines = out.splitlines()
    assert "2.0 h, 120 req/min per instance" in lines[0]
    (row,) = [line for line in lines if line.startswith("group sim-group")]
    assert row.split()[2] != "0"  # actions: the step was answered
    assert any(line.startswith("hpa-v2 defaults") for line in lines)
    assert any(" up " in line and "-> " in line for line in lines if line.startswith("    t="))
    assert str(group.pk) and "prov/req" in lines[1]


def test_the_group_own_recorded_traffic_is_a_trace(tmp_path):
    group = make_group("recorded", min_instances=1, max_instances=10, instance_capacity_rpm=60.0)
    add_recorded_traffic(make_member(group), minutes=30, busy_from=15, quiet=20, busy=90)

    out = run("--group", str(group.pk), "--history-days", "0.05")

    assert "recorded: recorded traffic, last 0.05 days" in out
    assert "group recorded" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--group", "nope", "--history-days", "1"], "No provider group 'nope'"),
        (["--group", "g", "--trace", "/no/such/file.csv", "--capacity-rpm", "100"], "Cannot read /no/such/file.csv"),
        (["--group", "g", "--history-days", "1"], "instance_capacity_rpm or give a capacity"),
        (["--group", "g", "--history-days", "1", "--capacity-rpm", "100"], "No recorded requests"),
        (["--group", "g", "--history-days", "1", "--capacity-rpm", "100", "--startup-seconds", "x"], "min-max"),
    ],
)
def test_bad_arguments_are_clear_errors(args, message):
    make_group("g")

    with pytest.raises(CommandError, match=message):
        run(*args)


def test_a_trace_file_row_that_cannot_be_read_is_named(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("timestamp,requests_per_minute\n0,100\n60,lots\n")

    with pytest.raises(ValueError, match="row 3"):
        read_trace_csv(str(path))
    path.write_text("time,rpm\n0,100\n")
    with pytest.raises(ValueError, match="missing column"):
        read_trace_csv(str(path))
