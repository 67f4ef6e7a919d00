"""Long ids and hashes cut short with the whole value on hover, and audit events linking to the
object they name (from the admin registry: no query per row)."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

import audit
from agents.models import Task
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db

REQUEST_ID = "0123456789abcdef0123456789abcdef"


def _recorded(event_type: str, **kwargs) -> AuditEvent:
    """An audit event written as during a request with ``REQUEST_ID``."""
    from observability.context import bind_request, clear_request

    bind_request(None, REQUEST_ID)
    try:
        return audit.record(event_type, **kwargs)
    finally:
        clear_request()


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _row(html: str, event: AuditEvent) -> str:
    return html.split(f"/admin/audit/auditevent/{event.pk}/change/")[1].split("</tr>")[0]


def test_the_audit_list_links_each_resource_to_its_page(world):
    task = world.alpha.tasks["pending"][0]
    events = {
        "task": _recorded("task.cancelled", resource=task),
        "agent": audit.record("agent.updated", resource=world.alpha.busy),
        "user": audit.record("user.updated", resource=world.operator),
        "gone": audit.record("task.deleted", resource_type="agents.task", resource_id=task.pk),
        "odd": audit.record("task.cancelled", resource_type="nowhere.thing", resource_id=5),
    }
    html = _client(world.root).get("/admin/audit/auditevent/").content.decode()
    assert f'<a href="/admin/agents/task/{task.pk}/change/">{task.pk}</a>' in _row(html, events["task"])
    assert f'href="/admin/agents/agent/{world.alpha.busy.pk}/change/"' in _row(html, events["agent"])
    assert f'href="/admin/accounts/user/{world.operator.pk}/change/"' in _row(html, events["user"])
    assert "<a href" not in _row(html, events["gone"]) and "<a href" not in _row(html, events["odd"])
    cell = _row(html, events["task"])
    assert f'title="{REQUEST_ID}">01234567…</code>' in cell
    assert REQUEST_ID not in cell.replace(f'title="{REQUEST_ID}"', "")


def test_the_audit_detail_cuts_hashes_and_keeps_them_on_hover(world):
    from audit.services import audit_seal

    _recorded("task.cancelled", resource=world.alpha.tasks["pending"][0])
    event = _recorded("task.cancelled", resource=world.alpha.tasks["pending"][0])
    audit_seal()
    event.refresh_from_db()
    html = _client(world.root).get(f"/admin/audit/auditevent/{event.pk}/change/").content.decode()
    assert event.hash and f'title="{event.hash}">{event.hash[:16]}…</code>' in html
    assert f'title="{event.prev_hash}">{event.prev_hash[:16]}…</code>' in html
    assert 'class="console-mono console-short"' in html


def test_the_audit_list_costs_the_same_queries_with_more_rows(world):
    client = _client(world.root)
    task = world.alpha.tasks["pending"][0]
    counts = []
    for n in (2, 30):
        for _ in range(n):
            _recorded("task.cancelled", resource=task)
        with CaptureQueriesContext(connection) as queries:
            assert client.get("/admin/audit/auditevent/").status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_a_tasks_page_cuts_its_traceparent_and_trace_id(world):
    task = world.alpha.tasks["running"][0]
    traceparent = f"00-{'ab' * 16}-{'cd' * 8}-01"
    Task.objects.filter(pk=task.pk).update(traceparent=traceparent)
    html = _client(world.operator).get(f"/admin/agents/task/{task.pk}/change/").content.decode()
    assert f'title="{traceparent}">{traceparent[:20]}…</code>' in html
    assert re.search(rf'id="console-trace-id"><code class="console-mono console-short" title="{"ab" * 16}">', html)
