"""Retention: audit_purge removes old ranges and leaves a chain that verifies; PostgreSQL refuses the rest."""

from __future__ import annotations

import datetime as dt
import io

import pytest
import time_machine
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from audit.verification import verify_chain

OLD = dt.datetime(2026, 1, 10, 12, tzinfo=dt.UTC)
NEW = dt.datetime(2026, 6, 10, 12, tzinfo=dt.UTC)


@pytest.fixture
def aged_chain(event_factory):
    with time_machine.travel(OLD, tick=False):
        old = [event_factory() for _ in range(3)]
    with time_machine.travel(NEW, tick=False):
        new = [event_factory() for _ in range(2)]
    return old, new


def _purge(before: str) -> str:
    out = io.StringIO()
    call_command("audit_purge", "--before", before, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_it_purges_old_events_and_records_an_anchor(aged_chain):
    old, new = aged_chain
    assert "purged 3 audit events" in _purge("2026-03-01")

    remaining = list(AuditEvent.objects.order_by("id"))
    assert [e.pk for e in remaining[:2]] == [e.pk for e in new]
    purged = remaining[-1]
    assert purged.event_type == "audit.purged"
    assert purged.details["count"] == 3
    assert purged.details["last_purged_id"] == old[-1].pk
    assert purged.details["last_purged_hash"] == old[-1].hash == new[0].prev_hash
    assert purged.details["before"] == "2026-03-01T00:00:00+00:00"
    assert verify_chain().ok


@pytest.mark.django_db
def test_it_still_detects_deletion_of_the_new_head_after_a_purge(aged_chain, tamper):
    _, new = aged_chain
    _purge("2026-03-01")
    with tamper() as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE id = %s", [new[0].pk])
    result = verify_chain()
    assert result.broken_id == new[1].pk
    assert "missing" in result.reason


@pytest.mark.django_db
def test_it_verifies_after_purging_everything_and_purging_again(aged_chain, event_factory):
    _purge("2027-01-01")
    assert list(AuditEvent.objects.values_list("event_type", flat=True)) == ["audit.purged"]
    assert verify_chain().ok
    event_factory()
    _purge("2099-01-01")  # a second purge: the first one's event goes too, the new anchor takes over
    assert list(AuditEvent.objects.values_list("event_type", flat=True)) == ["audit.purged"]
    assert AuditEvent.objects.get().details["count"] == 2
    assert verify_chain().ok


@pytest.mark.django_db
def test_it_does_nothing_when_nothing_is_old_enough(aged_chain):
    assert "purged 0 audit events" in _purge("2025-01-01")
    assert AuditEvent.objects.count() == 5


@pytest.mark.django_db
def test_it_refuses_to_purge_a_broken_range(aged_chain, tamper):
    old, _ = aged_chain
    with tamper() as cursor:
        cursor.execute("UPDATE audit_auditevent SET action = 'edited' WHERE id = %s", [old[1].pk])
    with pytest.raises(CommandError, match=f"refusing to purge: audit chain broken at event {old[1].pk}"):
        _purge("2026-03-01")
    assert AuditEvent.objects.count() == 5


@pytest.mark.django_db
def test_it_names_a_malformed_date():
    with pytest.raises(CommandError, match="--before: 'last tuesday'"):
        _purge("last tuesday")
