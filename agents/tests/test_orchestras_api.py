"""/api/v1/orchestras/: CRUD, lifecycle actions, membership."""

from __future__ import annotations

import pytest

from agents.models import Orchestra
from agents.tests.factories import OrchestraFactory, TaskFactory
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_it_creates_an_orchestra_in_draft_with_members(admin_api, make_agent):
    a, b = make_agent().agent, make_agent().agent
    r = admin_api.post("/api/v1/orchestras/", {"name": "build", "description": "CI fleet", "agents": [a.pk, b.pk]})
    assert r.status_code == 201, r.json()
    body = r.json()
    assert {k: body[k] for k in ("name", "description", "state")} == {
        "name": "build",
        "description": "CI fleet",
        "state": "draft",
    }
    assert sorted(body["agents"]) == sorted([a.pk, b.pk])
    assert AuditEvent.objects.filter(event_type="orchestra.created").exists()


def test_it_refuses_unknown_member_ids_and_duplicate_names(admin_api):
    OrchestraFactory(name="taken")
    r = admin_api.post("/api/v1/orchestras/", {"name": "new", "agents": [424242]})
    assert r.status_code == 400
    assert "agents" in r.json()["error"]["details"]
    r = admin_api.post("/api/v1/orchestras/", {"name": "taken"})
    assert r.status_code == 400
    assert "name" in r.json()["error"]["details"]
    assert Orchestra.objects.count() == 1


@pytest.mark.parametrize(
    ("start", "action", "end", "event"),
    [
        ("draft", "start", "running", "orchestra.started"),
        ("stopped", "start", "running", "orchestra.started"),
        ("running", "pause", "paused", "orchestra.paused"),
        ("paused", "resume", "running", "orchestra.resumed"),
        ("running", "stop", "stopped", "orchestra.stopped"),
        ("paused", "stop", "stopped", "orchestra.stopped"),
    ],
)
def test_it_moves_through_its_lifecycle(operator_api, start, action, end, event):
    orchestra = OrchestraFactory(state=start)
    r = operator_api.post(f"/api/v1/orchestras/{orchestra.pk}/{action}/")
    assert r.status_code == 200, r.json()
    assert r.json()["state"] == end
    assert AuditEvent.objects.filter(event_type=event, resource_id=str(orchestra.pk)).exists()


@pytest.mark.parametrize(("start", "action"), [("draft", "pause"), ("running", "start"), ("running", "resume")])
def test_it_refuses_a_transition_from_the_wrong_state(operator_api, start, action):
    orchestra = OrchestraFactory(state=start)
    r = operator_api.post(f"/api/v1/orchestras/{orchestra.pk}/{action}/")
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "orchestra_state_conflict"
    orchestra.refresh_from_db()
    assert orchestra.state == start


def test_it_needs_orchestra_control_for_lifecycle_actions(make_api):
    orchestra = OrchestraFactory(state="draft")
    r = make_api("developer").post(f"/api/v1/orchestras/{orchestra.pk}/start/")
    assert r.status_code == 403
    orchestra.refresh_from_db()
    assert orchestra.state == "draft"


def test_it_adds_and_removes_members(operator_api, make_agent):
    orchestra = OrchestraFactory()
    a, b = make_agent().agent, make_agent().agent
    r = operator_api.post(f"/api/v1/orchestras/{orchestra.pk}/add-agents/", {"agents": [a.pk, b.pk]})
    assert sorted(r.json()["agents"]) == sorted([a.pk, b.pk])
    r = operator_api.post(f"/api/v1/orchestras/{orchestra.pk}/remove-agents/", {"agents": [a.pk]})
    assert r.json()["agents"] == [b.pk]
    assert AuditEvent.objects.filter(event_type="orchestra.member.added").count() == 2
    assert AuditEvent.objects.filter(event_type="orchestra.member.removed").count() == 1


def test_it_replaces_membership_and_renames_with_patch(operator_api, make_agent):
    a, b = make_agent().agent, make_agent().agent
    orchestra = OrchestraFactory(agents=[a])
    r = operator_api.patch(f"/api/v1/orchestras/{orchestra.pk}/", {"name": "renamed", "agents": [b.pk]})
    assert r.status_code == 200, r.json()
    assert (r.json()["name"], r.json()["agents"]) == ("renamed", [b.pk])


def test_it_refuses_to_delete_an_orchestra_with_pending_work(admin_api):
    orchestra = OrchestraFactory()
    task = TaskFactory(orchestra=orchestra)
    r = admin_api.delete(f"/api/v1/orchestras/{orchestra.pk}/")
    assert r.status_code == 409
    task.status = "succeeded"
    task.save()
    assert admin_api.delete(f"/api/v1/orchestras/{orchestra.pk}/").status_code == 204
    assert not Orchestra.objects.exists()
    assert AuditEvent.objects.filter(event_type="orchestra.deleted").exists()


def test_it_filters_orchestras_by_state(operator_api):
    OrchestraFactory(name="a", state="running")
    OrchestraFactory(name="b", state="paused")
    names = [o["name"] for o in operator_api.get("/api/v1/orchestras/", {"state": "paused"}).json()["results"]]
    assert names == ["b"]
