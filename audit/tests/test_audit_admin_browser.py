"""A real browser filters the audit changelist, clicks Export CSV and checks the downloaded rows."""

from __future__ import annotations

import csv

import pytest

import audit
from audit.models import AuditEvent
from audit.tests.factories import UserFactory


@pytest.mark.browser
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_it_downloads_the_filtered_csv_from_the_admin(live_server, page):
    admin_user = UserFactory(username="root", is_staff=True, is_superuser=True)
    admin_user.set_password("a-long-browser-test-password")
    admin_user.save()
    audit.record("auth.failed", outcome="failure", resource_id="first-failure")
    audit.record("agent.created", resource_id="not-a-failure")
    audit.record("auth.failed", outcome="failure", resource_id="=second-failure")

    page.goto(f"{live_server.url}/admin/login/?next=/admin/audit/auditevent/")
    page.fill("#id_username", "root")
    page.fill("#id_password", "a-long-browser-test-password")
    page.click("input[type=submit]")
    page.wait_for_selector("#changelist")
    page.click("#changelist-filter a:text-is('Failure')")
    page.wait_for_url("**outcome__exact=failure**")

    with page.expect_download() as info:
        page.click("#audit-export-csv")
    download = info.value
    assert download.suggested_filename.endswith(".csv")
    with open(download.path(), encoding="utf-8", newline="") as stream:
        rows = list(csv.DictReader(stream))

    assert [row["resource_id"] for row in rows] == ["first-failure", "'=second-failure"]
    assert {row["event_type"] for row in rows} == {"auth.failed"}
    exported = AuditEvent.objects.get(event_type="audit.exported")
    assert exported.actor_name == "root"
    assert exported.details["filters"] == {"outcome__exact": "failure"}
    assert exported.details["rows"] == 2
