"""The audit trail in the admin: read-only, filters, search, pretty details, CSV export."""

from __future__ import annotations

import csv
import html
import io

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from audit.tests.factories import UserFactory

CHANGELIST = reverse("admin:audit_auditevent_changelist")
EXPORT = reverse("admin:audit_auditevent_export_csv")


@pytest.fixture
def staff_auditor(client):
    user = UserFactory(username="staff-auditor", is_staff=True, codes=["audit:read"])
    client.force_login(user)
    return client


@pytest.fixture
def staff_exporter(client):
    user = UserFactory(username="staff-exporter", is_staff=True, codes=["audit:read", "audit:export"])
    client.force_login(user)
    return client


@pytest.fixture
def events(event_factory):
    alice = UserFactory(username="alice")
    event_factory(event_type="user.updated", actor=alice, resource_id="r-1")
    event_factory(event_type="auth.failed", outcome="failure", details={"username": "bob", "reason": "bad password"})
    event_factory(event_type="agent.created", resource_id="r-2")
    # Without the auth.login events of the staff fixtures' own logins.
    return list(AuditEvent.objects.exclude(event_type="auth.login").order_by("id"))


def _csv(response) -> list[dict[str, str]]:
    assert response.status_code == 200
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.mark.django_db
def test_it_lists_filters_and_searches(staff_auditor, events):
    def shown(query: str = "") -> list[str]:
        response = staff_auditor.get(CHANGELIST + query)
        assert response.status_code == 200
        return [e.event_type for e in response.context["cl"].result_list if e.event_type != "auth.login"]

    assert shown() == ["agent.created", "auth.failed", "user.updated"]
    assert shown("?outcome__exact=failure") == ["auth.failed"]
    assert shown("?event_type=agent.created") == ["agent.created"]
    assert shown("?q=alice") == ["user.updated"]
    assert shown("?q=r-2") == ["agent.created"]
    year = events[0].occurred_at.year
    assert len(shown(f"?occurred_at__year={year}")) == 3


@pytest.mark.django_db
def test_it_is_read_only(staff_exporter, events):
    event = events[1]
    assert staff_exporter.get(reverse("admin:audit_auditevent_add")).status_code == 403
    assert staff_exporter.get(reverse("admin:audit_auditevent_delete", args=[event.pk])).status_code == 403
    page = staff_exporter.get(reverse("admin:audit_auditevent_change", args=[event.pk]))
    assert page.status_code == 200
    body = page.content.decode()
    assert "Save" not in body
    pretty = html.escape('{\n  "reason": "bad password",\n  "username": "bob"\n}')
    assert f"<pre>{pretty}</pre>" in body
    r = staff_exporter.post(reverse("admin:audit_auditevent_change", args=[event.pk]), {"action": "edited"})
    assert r.status_code == 403
    event.refresh_from_db()
    assert event.action == "update"
    assert "delete_selected" not in staff_exporter.get(CHANGELIST).content.decode()


@pytest.mark.django_db
def test_it_shows_export_csv_only_to_exporters(staff_auditor, events):
    assert "Export CSV" not in staff_auditor.get(CHANGELIST).content.decode()
    assert staff_auditor.get(EXPORT).status_code == 403
    assert not AuditEvent.objects.filter(event_type="audit.exported").exists()


@pytest.mark.django_db
def test_it_exports_what_the_changelist_filters_show(staff_exporter, events):
    page = staff_exporter.get(CHANGELIST + "?outcome__exact=success&q=r-2").content.decode()
    assert f'href="{EXPORT}?outcome__exact=success&amp;q=r-2"' in page
    rows = _csv(staff_exporter.get(EXPORT + "?outcome__exact=success&q=r-2"))
    assert [row["resource_id"] for row in rows] == ["r-2"]
    exported = AuditEvent.objects.get(event_type="audit.exported")
    assert exported.details["filters"] == {"outcome__exact": "success", "q": "r-2"}
    assert exported.details["rows"] == 1
    assert exported.details["via"] == "admin"
    assert exported.actor_name == "staff-exporter"


@pytest.mark.django_db
def test_it_exports_selected_rows_with_an_action(staff_exporter, events):
    chosen = [events[0].pk, events[2].pk]
    r = staff_exporter.post(
        CHANGELIST, {"action": "export_selected_csv", "_selected_action": [str(pk) for pk in chosen]}
    )
    assert [int(row["id"]) for row in _csv(r)] == chosen
    assert AuditEvent.objects.get(event_type="audit.exported").details["filters"] == {"selected_ids": chosen}


@pytest.mark.django_db
def test_it_offers_the_export_action_only_to_exporters(staff_auditor, events):
    assert "export_selected_csv" not in staff_auditor.get(CHANGELIST).content.decode()
