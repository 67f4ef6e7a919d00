"""GET /api/v1/audit-events/export/: streamed CSV/JSON/JSONL, same filters, audit:export, itself audited."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pytest
import time_machine
from django.http import StreamingHttpResponse

from audit import export
from audit.models import AuditEvent
from audit.tests.factories import UserFactory

URL = "/api/v1/audit-events/export/"


@pytest.fixture
def events(event_factory):
    with time_machine.travel(dt.datetime(2026, 3, 1, 10, 30, tzinfo=dt.UTC), tick=False):
        event_factory(event_type="agent.created", action='=HYPERLINK("http://evil")', resource_id="-1+2")
        event_factory(event_type="task.claimed", details={"note": "@SUM(A1)", "n": 1})
        event_factory(event_type="auth.failed", outcome="failure", resource_id="\tcell")
    return list(AuditEvent.objects.exclude(event_type="auth.login").order_by("id"))


def _body(response) -> str:
    assert response.status_code == 200, response.content
    assert isinstance(response, StreamingHttpResponse)
    return b"".join(response.streaming_content).decode()


def _csv(response) -> list[dict[str, str]]:
    """The CSV rows, without the auth.login events the test clients' own logins record."""
    return [row for row in csv.DictReader(io.StringIO(_body(response))) if row["event_type"] != "auth.login"]


@pytest.mark.django_db
def test_it_streams_csv_with_a_header_and_utc_times(exporter_client, events):
    r = exporter_client.get(URL)  # csv is the default
    assert r["Content-Type"] == "text/csv; charset=utf-8"
    assert r["Content-Disposition"].startswith('attachment; filename="audit-events-')
    rows = _csv(r)
    assert [row["id"] for row in rows] == [str(e.pk) for e in events]  # oldest first
    assert list(rows[0]) == list(export.FIELDS)
    assert rows[0]["occurred_at"] == "2026-03-01T10:30:00Z"
    assert json.loads(rows[1]["details"]) == {"n": 1, "note": "@SUM(A1)"}  # JSON text starts with {: safe
    assert rows[0]["hash"] == events[0].hash


@pytest.mark.django_db
def test_it_neutralises_cells_that_would_be_formulas(exporter_client, events):
    rows = _csv(exporter_client.get(URL + "?format=csv"))
    assert rows[0]["action"] == '\'=HYPERLINK("http://evil")'
    assert rows[0]["resource_id"] == "'-1+2"
    assert rows[2]["resource_id"] == "'\tcell"
    assert rows[2]["event_type"] == "auth.failed"  # ordinary cells untouched


def test_it_neutralises_every_dangerous_prefix():
    for prefix in ("=", "+", "-", "@", "\t", "\r"):
        assert export.neutralise(prefix + "x") == "'" + prefix + "x"
    assert export.neutralise("plain") == "plain"
    assert export.neutralise("") == ""


@pytest.mark.django_db
def test_it_streams_json_as_one_array(exporter_client, events):
    r = exporter_client.get(URL + "?format=json")
    assert r["Content-Type"] == "application/json"
    rows = [row for row in json.loads(_body(r)) if row["event_type"] != "auth.login"]
    assert [row["id"] for row in rows] == [e.pk for e in events]
    assert rows[1]["details"] == {"n": 1, "note": "@SUM(A1)"}  # JSON is not neutralised: it is data
    assert rows[0]["occurred_at"] == "2026-03-01T10:30:00Z"


@pytest.mark.django_db
def test_it_streams_an_empty_json_array(exporter_client):
    assert json.loads(_body(exporter_client.get(URL + "?format=json&type=task.*"))) == []


@pytest.mark.django_db
def test_it_streams_json_lines(exporter_client, events):
    r = exporter_client.get(URL + "?format=jsonl&type=task.*")
    assert r["Content-Type"] == "application/jsonl"
    lines = _body(r).splitlines()
    assert [json.loads(line)["event_type"] for line in lines] == ["task.claimed"]


@pytest.mark.django_db
def test_it_applies_the_list_filters(exporter_client, events):
    rows = _csv(exporter_client.get(URL + "?outcome=failure"))
    assert [row["event_type"] for row in rows] == ["auth.failed"]


@pytest.mark.django_db
def test_it_records_each_export_with_its_filters_and_row_count(exporter_client, events):
    r = exporter_client.get(URL + "?format=jsonl&type=agent.*&severity=info")
    exported = AuditEvent.objects.get(event_type="audit.exported")
    assert exported.actor_name == "exporter"
    assert exported.details["format"] == "jsonl"
    assert exported.details["filters"] == {"type": "agent.*", "severity": "info"}
    assert exported.details["rows"] == 1
    assert exported.details["via"] == "api"
    assert len(_body(r).splitlines()) == 1  # the audit.exported event is not part of its own export


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "field"), [("format=xlsx", "format"), ("format=csv&since=soon", "since"), ("severity=x", "severity")]
)
def test_it_answers_400_naming_a_bad_parameter_and_records_nothing(exporter_client, events, query, field):
    r = exporter_client.get(f"{URL}?{query}")
    assert r.status_code == 400
    assert r["Content-Type"] == "application/json"
    assert field in r.json()["error"]["details"]
    assert not AuditEvent.objects.filter(event_type="audit.exported").exists()


@pytest.mark.django_db
def test_it_requires_audit_export_and_audits_the_denial(auditor_client, events):
    r = auditor_client.get(URL + "?format=csv")
    assert r.status_code == 403
    assert "audit:export" in r.json()["error"]["message"]
    denial = AuditEvent.objects.get(event_type="authz.permission.denied")
    assert denial.actor_name == "auditor"
    assert denial.details == {
        "permission": "audit:export",
        "path": URL,
        "method": "GET",
        "project": None,
        "limited_by": "roles",
    }
    assert denial.action == "export"
    assert not AuditEvent.objects.filter(event_type="audit.exported").exists()


@pytest.mark.django_db
def test_it_refuses_anonymous_callers(client, events):
    assert client.get(URL).status_code == 401


@pytest.mark.django_db
def test_it_reads_rows_in_chunks_across_boundaries(event_factory):
    for _ in range(5):
        event_factory()
    ids = list(AuditEvent.objects.order_by("id").values_list("id", flat=True))
    for size in (1, 2, 5, 6):
        assert [row["id"] for row in export.iter_rows(AuditEvent.objects.all(), chunk_size=size)] == ids


@pytest.mark.django_db
def test_it_exports_with_an_api_key_holding_the_scope(client, events):
    from accounts.services import api_key_create

    owner = UserFactory(codes=["audit:read", "audit:export"])
    key, raw = api_key_create(owner=owner, name="nightly", scopes=["audit:export"])
    r = client.get(URL + "?format=jsonl&until=2026-04-01T00:00:00Z", headers={"X-API-Key": raw})
    assert len(_body(r).splitlines()) == 3
    assert AuditEvent.objects.get(event_type="audit.exported").api_key_prefix == key.prefix
