"""GET /api/v1/audit-events/: audit:read, filters, cursor pagination, 400s naming the parameter."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.test import Client

import audit
from audit.models import AuditEvent
from audit.tests.factories import UserFactory

URL = "/api/v1/audit-events/"


@pytest.fixture
def events(event_factory):
    alice = UserFactory(username="alice")
    with time_machine.travel(dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC), tick=False):
        event_factory(event_type="agent.created", actor=alice, resource_id="7")
        event_factory(event_type="agent.deleted", resource_id="7")
    with time_machine.travel(dt.datetime(2026, 3, 2, 10, tzinfo=dt.UTC), tick=False):
        event_factory(event_type="auth.failed", outcome="failure")
        event_factory(event_type="security.suspicious_activity", resource_type="accounts.user", resource_id="9")
    return list(AuditEvent.objects.exclude(event_type="auth.login").order_by("id"))


def _rows(response) -> list[dict]:
    """The rows of a page, without the auth.login events the test clients' own logins record."""
    assert response.status_code == 200, response.content
    return [row for row in response.json()["results"] if row["event_type"] != "auth.login"]


def _types(response) -> list[str]:
    return [row["event_type"] for row in _rows(response)]


@pytest.mark.django_db
def test_it_lists_events_newest_first(auditor_client, events):
    r = auditor_client.get(URL)
    assert _types(r) == ["security.suspicious_activity", "auth.failed", "agent.deleted", "agent.created"]
    row = _rows(r)[-1]
    assert row["actor_name"] == "alice"
    assert row["occurred_at"] == "2026-03-01T10:00:00Z"
    assert row["hash"] == events[0].hash


@pytest.mark.django_db
def test_it_does_not_audit_reads(auditor_client, events):
    before = AuditEvent.objects.count()
    auditor_client.get(URL)
    auditor_client.get(f"{URL}{events[0].pk}/")
    assert AuditEvent.objects.count() == before


@pytest.mark.django_db
def test_it_retrieves_one_event(auditor_client, events):
    r = auditor_client.get(f"{URL}{events[2].pk}/")
    assert r.status_code == 200
    assert r.json()["outcome"] == "failure"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("type=agent.created", ["agent.created"]),
        ("type=agent.*", ["agent.deleted", "agent.created"]),
        ("severity=critical", ["security.suspicious_activity"]),
        ("outcome=failure", ["auth.failed"]),
        ("actor=alice", ["agent.created"]),
        ("resource_type=accounts.user&resource_id=9", ["security.suspicious_activity"]),
        ("resource_id=7", ["agent.deleted", "agent.created"]),
        ("since=2026-03-02T00:00:00Z", ["security.suspicious_activity", "auth.failed"]),
        ("until=2026-03-02T00:00:00%2B00:00", ["agent.deleted", "agent.created"]),
        ("since=2026-03-01T09:00:00Z&until=2026-03-01T11:00:00Z&type=agent.*", ["agent.deleted", "agent.created"]),
    ],
)
def test_it_filters(auditor_client, events, query, expected):
    assert _types(auditor_client.get(f"{URL}?{query}")) == expected


@pytest.mark.django_db
def test_it_filters_by_request_id(auditor_client):
    other = Client()
    other.force_login(UserFactory())
    other.get(URL, headers={"X-Request-ID": "trace-me"})  # a denial, recorded with this request id
    assert _types(auditor_client.get(f"{URL}?request_id=trace-me")) == ["authz.permission.denied"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("severity=bogus", "severity"),
        ("outcome=maybe", "outcome"),
        ("type=agent.creatd", "type"),
        ("type=nope.*", "type"),
        ("since=yesterday", "since"),
        ("until=2026-13-45T00:00:00Z", "until"),
        ("page_size=-3", "page_size"),
        ("page_size=lots", "page_size"),
    ],
)
def test_it_answers_400_naming_a_bad_parameter(auditor_client, events, query, field):
    r = auditor_client.get(f"{URL}?{query}")
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["details"]
    assert error["message"].startswith(f"{field}:")


@pytest.mark.django_db
def test_it_pages_with_a_cursor(auditor_client, events):
    first = auditor_client.get(f"{URL}?page_size=3").json()
    assert len(first["results"]) == 3
    assert first["previous"] is None
    audit.record("system.started")  # appended while paging: cursors stay stable
    second = auditor_client.get(first["next"])
    assert [row["id"] for row in _rows(second)] == [events[0].pk]
    assert second.json()["next"] is None


@pytest.mark.django_db
def test_it_bounds_the_page_size(auditor_client, event_factory):
    for _ in range(3):
        event_factory()
    from audit.pagination import AuditCursorPagination

    AuditCursorPagination.max_page_size, saved = 2, AuditCursorPagination.max_page_size
    try:
        assert len(auditor_client.get(f"{URL}?page_size=100000&type=resource.updated").json()["results"]) == 2
    finally:
        AuditCursorPagination.max_page_size = saved


@pytest.mark.django_db
def test_it_requires_authentication(client):
    r = client.get(URL)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "not_authenticated"


@pytest.mark.django_db
def test_it_requires_audit_read_and_audits_the_denial(client):
    client.force_login(UserFactory(username="nosy", codes=["agent:read"]))
    r = client.get(URL)
    assert r.status_code == 403
    assert "audit:read" in r.json()["error"]["message"]
    denial = AuditEvent.objects.get(event_type="authz.permission.denied")
    assert denial.actor_name == "nosy"
    assert denial.details["permission"] == "audit:read"


@pytest.mark.django_db
def test_it_lists_in_a_fixed_number_of_queries(auditor_client, event_factory, django_assert_max_num_queries):
    for _ in range(20):
        event_factory()
    auditor_client.get(URL)  # warm the permission cache
    with django_assert_max_num_queries(4):
        assert len(_types(auditor_client.get(URL))) == 20
