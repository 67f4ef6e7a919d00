"""The admin pages of flow control: concurrency limits and budgets through the services, usage totals."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import Project
from agents import services
from agents.flow_models import ConcurrencyLimit
from agents.tests.factories import UserFactory
from audit.models import AuditEvent


@pytest.fixture
def superuser_client(db):
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def test_the_admin_creates_a_limit_through_the_service(superuser_client):
    project = Project.objects.get(slug="default")
    r = superuser_client.post(
        "/admin/agents/concurrencylimit/add/", {"project": project.pk, "key": "gpu", "max_running": 2}
    )
    assert r.status_code == 302, r.content[:2000]
    assert ConcurrencyLimit.objects.get().max_running == 2
    assert AuditEvent.objects.filter(event_type="concurrency_limit.created").count() == 1
    assert b"gpu" in superuser_client.get("/admin/agents/concurrencylimit/").content


def test_the_usage_page_totals_usage_per_orchestra_and_agent(superuser_client, make_agent, orchestra):
    orchestra.state = "running"
    orchestra.save()
    worker = make_agent(orchestra=orchestra, name="summing-agent")
    owner = UserFactory(roles=["operator"])
    services.task_submit(submitter=owner, orchestra=orchestra, kind="echo")
    (task,) = worker.api.post("/api/v1/agent/claim/", {}).json()["tasks"]
    usage = [{"model": "m", "input_tokens": 7, "output_tokens": 3, "cost": "0.5"}] * 2
    worker.api.post(f"/api/v1/tasks/{task['id']}/complete/", {"attempt": 1, "usage": usage})
    page = superuser_client.get("/admin/agents/usagerecord/").content.decode()
    assert "Usage per orchestra" in page and "Usage per agent" in page
    assert "<td>summing-agent</td><td>USD</td><td>14</td><td>6</td><td>1.0000</td><td>2</td>" in page
    assert f"<td>{orchestra.name}</td><td>USD</td><td>14</td>" in page
