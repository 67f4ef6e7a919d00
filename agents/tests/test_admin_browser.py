"""The operator console in a real browser: registering an agent (its key shown once), the status filter,
read-only task pages."""

from __future__ import annotations

import pytest

from agents.models import Agent
from agents.tests.factories import UserFactory

# live_server serves from another thread, which SQLite's in-memory test database cannot share safely.
pytestmark = [
    pytest.mark.browser,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def test_it_registers_an_agent_in_the_admin_and_shows_its_key_once(live_server, page):
    user = UserFactory(username="op", roles=["operator"], is_staff=True)
    user.set_password("correct horse battery staple")
    user.save()
    page.goto(f"{live_server.url}/admin/login/?next=/admin/agents/agent/add/")
    page.fill("#id_username", "op")
    page.fill("#id_password", "correct horse battery staple")
    page.click("input[type=submit]")
    page.fill("#id_name", "browser-made")
    page.select_option("#id_type", "researcher")
    page.fill("#id_capabilities", "search, summarize")
    page.click("input[name=_save]")
    key = page.text_content("#agent-api-key")
    agent = Agent.objects.get(name="browser-made")
    assert key.startswith(f"sym_{agent.api_key.prefix}_")
    assert agent.capabilities == ["search", "summarize"]
    page.click("text=Continue to the agent")
    assert "browser-made" in page.content()
    assert key not in page.content()
    page.goto(f"{live_server.url}/admin/agents/agent/")
    assert "search, summarize" in page.content()
    assert key not in page.content()


def test_it_filters_on_the_shown_status_and_shows_tasks_read_only(live_server, page, settings):
    """Issue 10: a silent agent stayed under "busy", and a task's page offered Save and claimed success."""
    from datetime import timedelta

    from django.utils import timezone

    from agents import services
    from agents.tests.factories import OrchestraFactory, TaskFactory

    user = UserFactory(username="op", roles=["operator"], is_staff=True)
    user.set_password("correct horse battery staple")
    user.save()
    silent, _ = services.agent_create(owner=user, name="silent-one")
    stale = timezone.now() - timedelta(seconds=settings.SYMPHONY_AGENT_HEARTBEAT_TIMEOUT + 5)
    Agent.objects.filter(pk=silent.pk).update(status="busy", last_heartbeat_at=stale)
    task = TaskFactory(orchestra=OrchestraFactory(), status="succeeded", result={"ok": True})

    page.goto(f"{live_server.url}/admin/login/?next=/admin/agents/agent/")
    page.fill("#id_username", "op")
    page.fill("#id_password", "correct horse battery staple")
    page.click("input[type=submit]")
    page.click("#changelist-filter >> text=Busy")
    assert "silent-one" not in page.text_content("#changelist")
    page.click("#changelist-filter >> text=Offline")
    assert "silent-one" in page.text_content("#changelist")

    page.goto(f"{live_server.url}/admin/agents/task/{task.pk}/change/")
    assert page.query_selector("input[name=_save]") is None
    assert "View task" in page.content()
