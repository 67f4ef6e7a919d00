"""manage.py audit_export: the API's export for scheduled jobs, to stdout or a file."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pytest
import time_machine
from django.core.management import CommandError, call_command

from audit.models import AuditEvent


@pytest.fixture
def events(event_factory):
    with time_machine.travel(dt.datetime(2026, 2, 1, tzinfo=dt.UTC), tick=False):
        event_factory(event_type="agent.created", action="+cmd")
    with time_machine.travel(dt.datetime(2026, 4, 1, tzinfo=dt.UTC), tick=False):
        event_factory(event_type="agent.updated")
        event_factory(event_type="auth.login")


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command("audit_export", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_it_writes_csv_to_stdout(events):
    rows = list(csv.DictReader(io.StringIO(_run())))
    assert [row["event_type"] for row in rows] == ["agent.created", "agent.updated", "auth.login"]
    assert rows[0]["action"] == "'+cmd"  # the same serialisation as the API


@pytest.mark.django_db
def test_it_filters_by_time_and_type_prefix(events):
    out = _run("--format", "jsonl", "--since", "2026-03-01T00:00:00Z", "--until", "2026-05-01", "--type", "agent.*")
    assert [json.loads(line)["event_type"] for line in out.splitlines()] == ["agent.updated"]


@pytest.mark.django_db
def test_it_writes_json_to_a_file_and_records_the_export(events, tmp_path):
    target = tmp_path / "audit.json"
    out = _run("--format", "json", "--output", str(target), "--type", "auth.login")
    assert "exported 1 audit events" in out
    assert [row["event_type"] for row in json.loads(target.read_text())] == ["auth.login"]
    exported = AuditEvent.objects.get(event_type="audit.exported")
    assert exported.details == {
        "format": "json",
        "filters": {"type": "auth.login"},
        "rows": 1,
        "via": "command",
        "upper_id": exported.details["upper_id"],
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "named"),
    [(["--since", "tomorrow"], "--since"), (["--type", "bogus"], "--type"), (["--severity", "loud"], "--severity")],
)
def test_it_names_a_bad_argument(events, args, named):
    with pytest.raises(CommandError, match=f"^{named}: "):
        _run(*args)
    assert not AuditEvent.objects.filter(event_type="audit.exported").exists()


@pytest.mark.django_db
def test_it_refuses_an_unsupported_format(events):
    with pytest.raises(CommandError, match="--format"):
        _run("--format", "xlsx")
