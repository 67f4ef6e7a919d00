"""The operator console: agents (key shown once), orchestra lifecycle actions, task cancel and retry."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from agents.models import Agent, Orchestra, Task
from agents.tests.factories import OrchestraFactory, TaskFactory, UserFactory
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client():
    def make(*roles: str) -> Client:
        client = Client()
        client.force_login(UserFactory(roles=list(roles), is_staff=True))
        return client

    return make


@pytest.fixture
def operator_admin(staff_client):
    return staff_client("operator")


def test_it_lists_agents_with_status_age_capabilities_and_orchestras(operator_admin, make_agent):
    worker = make_agent(name="lister", capabilities=["echo", "sleep"], orchestra=OrchestraFactory(name="band"))
    worker.api.post("/api/v1/agent/heartbeat/", {"status": "idle"})
    r = operator_admin.get("/admin/agents/agent/")
    assert r.status_code == 200
    page = r.content.decode()
    assert "lister" in page
    assert "idle (heartbeat" in page
    assert "echo, sleep" in page
    assert "band" in page
    assert operator_admin.get("/admin/agents/agent/", {"q": "list"}).status_code == 200


def test_it_creates_an_agent_and_shows_its_key_on_that_page_only(operator_admin):
    r = operator_admin.post(
        "/admin/agents/agent/add/",
        {"name": "console-made", "type": "tester", "capabilities": "echo, word_count", "trust_level": "untrusted",
         "version": "", "metadata": "{}"},
    )  # fmt: skip
    assert r.status_code == 200, r.content.decode()[:2000]
    page = r.content.decode()
    agent = Agent.objects.get(name="console-made")
    assert agent.capabilities == ["echo", "word_count"]
    assert 'id="agent-api-key"' in page
    key = page.split('id="agent-api-key"')[1].split(">")[1].split("<")[0]
    assert key.startswith("sym_") and agent.api_key.prefix in key
    assert "no-store" in r["Cache-Control"]
    assert key not in operator_admin.get(f"/admin/agents/agent/{agent.pk}/change/").content.decode()
    assert key not in operator_admin.get("/admin/agents/agent/").content.decode()
    assert AuditEvent.objects.filter(event_type="agent.created", resource_id=str(agent.pk)).exists()


def test_it_refuses_a_trust_level_the_operator_may_not_set(operator_admin, make_agent):
    agent = make_agent(name="cautious").agent
    r = operator_admin.post(
        f"/admin/agents/agent/{agent.pk}/change/",
        {"name": "cautious", "type": "custom", "capabilities": "", "trust_level": "high", "version": "",
         "metadata": "{}"},
    )  # fmt: skip
    assert r.status_code == 200  # the form again, with the error on the field
    assert "trust:manage" in r.content.decode()
    agent.refresh_from_db()
    assert agent.trust_level == "untrusted"


@pytest.mark.parametrize("metadata", ['{"a": "\\ud800"}', '{"\\udfff": 1}', '{"a": ["\\u0000"]}'])
def test_it_refuses_metadata_no_database_can_store(operator_admin, make_agent, metadata):
    """Issue 10: typed into the admin, a lone surrogate was a 500 on PostgreSQL and, on SQLite, a row
    that broke every later answer showing it."""
    agent = make_agent(name="plain").agent
    r = operator_admin.post(
        f"/admin/agents/agent/{agent.pk}/change/",
        {"name": "plain", "type": "custom", "capabilities": "", "trust_level": "untrusted", "version": "",
         "metadata": metadata},
    )  # fmt: skip
    assert r.status_code == 200  # the form again, with the error on the field
    assert "lone UTF-16 surrogates" in r.content.decode()
    agent.refresh_from_db()
    assert agent.metadata == {}


def test_it_changes_an_agent_through_the_service(operator_admin, make_agent):
    agent = make_agent(name="changing").agent
    r = operator_admin.post(
        f"/admin/agents/agent/{agent.pk}/change/",
        {"name": "changing", "type": "custom", "capabilities": "gpu", "trust_level": "verified", "version": "3",
         "metadata": "{}"},
    )  # fmt: skip
    assert r.status_code == 302
    agent.refresh_from_db()
    assert (agent.capabilities, agent.trust_level, agent.version) == (["gpu"], "verified", "3")
    assert AuditEvent.objects.filter(event_type="agent.trust.changed").exists()


@pytest.mark.parametrize(("action", "start", "end"), [("start", "draft", "running"), ("pause", "running", "paused"),
                                                      ("stop", "running", "stopped")])  # fmt: skip
def test_it_runs_orchestra_lifecycle_actions(operator_admin, action, start, end):
    orchestra = OrchestraFactory(state=start)
    r = operator_admin.post("/admin/agents/orchestra/", {"action": action, "_selected_action": [orchestra.pk]})
    assert r.status_code == 302
    orchestra.refresh_from_db()
    assert orchestra.state == end


def test_it_reports_a_refused_transition_without_changing_anything(operator_admin):
    orchestra = OrchestraFactory(state="draft")
    r = operator_admin.post(
        "/admin/agents/orchestra/", {"action": "pause", "_selected_action": [orchestra.pk]}, follow=True
    )
    assert "Cannot pause" in r.content.decode()
    assert Orchestra.objects.get(pk=orchestra.pk).state == "draft"


def test_it_hides_lifecycle_actions_without_orchestra_control(staff_client):
    OrchestraFactory()
    page = staff_client("viewer").get("/admin/agents/orchestra/").content.decode()
    assert 'value="start"' not in page


def test_it_creates_an_orchestra_with_members_through_the_service(staff_client, make_agent):
    agent = make_agent().agent
    admin = staff_client("super_admin")
    r = admin.post("/admin/agents/orchestra/add/", {"name": "made-here", "description": "", "agents": [agent.pk]})
    assert r.status_code == 302
    orchestra = Orchestra.objects.get(name="made-here")
    assert list(orchestra.agents.all()) == [agent]
    assert AuditEvent.objects.filter(event_type="orchestra.created").exists()


def test_it_shows_a_task_with_readable_json(operator_admin, orchestra):
    task = TaskFactory(orchestra=orchestra, input={"text": "<b>hi</b>"}, result={"ok": True}, status="succeeded")
    page = operator_admin.get(f"/admin/agents/task/{task.pk}/change/").content.decode()
    assert "&quot;text&quot;: &quot;&lt;b&gt;hi&lt;/b&gt;&quot;" in page  # pretty-printed and escaped
    assert "&quot;ok&quot;: true" in page


def test_it_cancels_and_retries_tasks_from_the_list(operator_admin, orchestra):
    task = TaskFactory(orchestra=orchestra)
    operator_admin.post("/admin/agents/task/", {"action": "cancel", "_selected_action": [task.pk]})
    assert Task.objects.get(pk=task.pk).status == "cancelled"
    operator_admin.post("/admin/agents/task/", {"action": "retry", "_selected_action": [task.pk]})
    assert Task.objects.get(pk=task.pk).status == "pending"
    assert operator_admin.get("/admin/agents/task/", {"status": "pending"}).status_code == 200


def test_it_filters_agents_on_the_status_the_list_shows(operator_admin, make_agent, settings):
    """Issue 10: the filter used the stored status, so a silent agent was listed under busy (as the
    last status it reported) while the column said offline, and Offline found none."""
    silent, live = make_agent(name="silent").agent, make_agent(name="live")
    Agent.objects.filter(pk=silent.pk).update(
        status="busy",
        last_heartbeat_at=timezone.now() - timedelta(seconds=settings.SYMPHONY_AGENT_HEARTBEAT_TIMEOUT + 1),
    )
    live.api.post("/api/v1/agent/heartbeat/", {"status": "busy"})

    def listed(status: str) -> set[str]:
        page = operator_admin.get("/admin/agents/agent/", {"status": status})
        assert page.status_code == 200
        return {agent.name for agent in page.context["cl"].result_list}

    assert listed("offline") == {"silent"}
    assert listed("busy") == {"live"}
    faceted = operator_admin.get("/admin/agents/agent/", {"_facets": "True"}).content.decode()
    assert "offline (1)" in faceted.lower() and "busy (1)" in faceted.lower()


def test_it_shows_a_task_read_only_without_a_save_button(operator_admin, orchestra):
    """Issue 10: saving the read-only page said "changed successfully" although nothing could change."""
    task = TaskFactory(orchestra=orchestra, status="succeeded", result={"ok": True})
    page = operator_admin.get(f"/admin/agents/task/{task.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="_save"' not in html and 'name="_continue"' not in html
    assert "View task" in html

    response = operator_admin.post(f"/admin/agents/task/{task.pk}/change/", {"kind": "other"}, follow=True)
    assert response.status_code == 403
    assert "changed successfully" not in response.content.decode()
    task.refresh_from_db()
    assert task.kind == "echo"


@pytest.fixture
def deleter(staff_client):
    """An operator who may also delete tasks (``agent:delete``, through the admin role)."""
    return staff_client("operator", "admin")


def test_it_deletes_a_finished_task_through_the_service_audited(deleter, orchestra):
    task = TaskFactory(orchestra=orchestra, status="failed")
    assert deleter.get(f"/admin/agents/task/{task.pk}/delete/").status_code == 200
    response = deleter.post(f"/admin/agents/task/{task.pk}/delete/", {"post": "yes"}, follow=True)
    assert response.status_code == 200
    assert not Task.objects.filter(pk=task.pk).exists()
    event = AuditEvent.objects.get(event_type="task.deleted")
    assert (event.resource_id, event.details["status"]) == (str(task.pk), "failed")
    assert event.actor_name == response.wsgi_request.user.username


def test_it_refuses_to_delete_a_running_task(deleter, make_agent, orchestra):
    worker = make_agent(orchestra=orchestra)
    task = TaskFactory(orchestra=orchestra)
    worker.api.post("/api/v1/agent/claim/")
    page = deleter.get(f"/admin/agents/task/{task.pk}/delete/").content.decode()
    assert "running, cancel it first" in page
    assert 'name="post"' not in page  # no confirmation button
    deleter.post(f"/admin/agents/task/{task.pk}/delete/", {"post": "yes"})
    assert Task.objects.get(pk=task.pk).status == "running"
    assert not AuditEvent.objects.filter(event_type="task.deleted").exists()


def test_it_bulk_deletes_through_the_service_unless_a_task_is_running(deleter, make_agent, orchestra):
    worker = make_agent(orchestra=orchestra)
    running = TaskFactory(orchestra=orchestra)
    worker.api.post("/api/v1/agent/claim/")
    done = [TaskFactory(orchestra=orchestra, status="succeeded") for _ in range(2)]
    selection = {"action": "delete_selected", "_selected_action": [t.pk for t in [running, *done]], "post": "yes"}

    refused = deleter.post("/admin/agents/task/", selection)
    assert "running, cancel it first" in refused.content.decode()
    assert Task.objects.count() == 3

    selection["_selected_action"] = [t.pk for t in done]
    confirm = deleter.post("/admin/agents/task/", {**selection, "post": ""})
    assert 'name="post"' in confirm.content.decode()  # Django's confirmation page first
    response = deleter.post("/admin/agents/task/", selection, follow=True)
    assert "Deleted 2 tasks." in response.content.decode()
    assert list(Task.objects.values_list("pk", flat=True)) == [running.pk]
    assert AuditEvent.objects.filter(event_type="task.deleted").count() == 2
