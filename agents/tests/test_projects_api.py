"""Projects isolate teams: another project's objects answer 404, lists never show them, writes across
projects are refused, and agents claim only their own project's tasks."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import Role, RoleBinding
from accounts.services import api_key_create
from agents.models import Task
from agents.tests.conftest import Api
from agents.tests.factories import OrchestraFactory, TaskFactory, UserFactory


@pytest.fixture
def world(project_factory: Any, make_agent: Any) -> dict[str, Any]:
    alpha, beta = project_factory(slug="alpha"), project_factory(slug="beta")
    user = UserFactory(username="alpha-operator")
    RoleBinding.objects.create(user=user, role=Role.objects.get(name="operator"), project=alpha)
    _, raw = api_key_create(owner=user, name="alpha-key")
    objects: dict[str, Any] = {"alpha": alpha, "beta": beta, "api": Api(raw)}
    for project in (alpha, beta):
        orchestra = OrchestraFactory(project=project, name=f"{project.slug}-orchestra")
        agent = make_agent(name=f"{project.slug}-agent", project=project, orchestra=orchestra)
        objects[project.slug] = {
            "orchestra": orchestra,
            "agent": agent,
            "task": TaskFactory(orchestra=orchestra),
        }
    return objects


def test_it_lists_only_the_callers_projects(world: dict[str, Any]) -> None:
    api = world["api"]
    for path in ("/api/v1/agents/", "/api/v1/orchestras/", "/api/v1/tasks/"):
        r = api.get(path)
        assert r.status_code == 200, path
        assert {row["project"] for row in r.json()["results"]} == {"alpha"}, path


def test_it_answers_404_for_another_projects_objects(world: dict[str, Any]) -> None:
    api, beta = world["api"], world["beta"]
    assert api.get(f"/api/v1/agents/{beta['agent'].agent.pk}/").status_code == 404
    assert api.get(f"/api/v1/orchestras/{beta['orchestra'].pk}/").status_code == 404
    assert api.get(f"/api/v1/tasks/{beta['task'].pk}/").status_code == 404
    assert api.post(f"/api/v1/tasks/{beta['task'].pk}/cancel/").status_code == 404
    assert api.post(f"/api/v1/orchestras/{beta['orchestra'].pk}/stop/").status_code == 404
    assert world["alpha"] and api.get(f"/api/v1/agents/{world['alpha']['agent'].agent.pk}/").status_code == 200


def test_it_refuses_writes_that_reach_into_another_project(world: dict[str, Any]) -> None:
    api, alpha, beta = world["api"], world["alpha"], world["beta"]
    before = Task.objects.count()
    r = api.post("/api/v1/tasks/", {"kind": "echo", "orchestra": beta["orchestra"].pk})
    assert r.status_code == 400, r.content
    assert "orchestra" in r.json()["error"]["details"]
    r = api.post(f"/api/v1/orchestras/{alpha['orchestra'].pk}/add-agents/", {"agents": [beta["agent"].agent.pk]})
    assert r.status_code == 400
    assert "agents" in r.json()["error"]["details"]
    r = api.post("/api/v1/agents/", {"name": "sneaky", "project": "beta"})
    assert r.status_code == 400
    assert "project" in r.json()["error"]["details"]
    assert Task.objects.count() == before
    assert not beta["orchestra"].agents.filter(pk=alpha["agent"].agent.pk).exists()


def test_it_creates_in_a_project_the_caller_holds(world: dict[str, Any]) -> None:
    r = world["api"].post("/api/v1/agents/", {"name": "new-one", "project": "alpha"})
    assert r.status_code == 201
    assert r.json()["project"] == "alpha"


def test_it_filters_lists_by_project(world: dict[str, Any], admin_api: Api) -> None:
    r = admin_api.get("/api/v1/tasks/", {"project": "beta"})
    assert r.status_code == 200
    assert {row["project"] for row in r.json()["results"]} == {"beta"}


def test_agents_claim_only_their_own_projects_tasks(world: dict[str, Any]) -> None:
    alpha_agent = world["alpha"]["agent"]
    # A beta task the alpha agent is otherwise fit for: same capabilities, a running orchestra.
    r = alpha_agent.api.post("/api/v1/agent/claim/", {"max_tasks": 10})
    assert r.status_code == 200, r.content
    claimed = {row["id"] for row in r.json()["tasks"]}
    assert claimed == {world["alpha"]["task"].pk}
    assert Task.objects.get(pk=world["beta"]["task"].pk).status == Task.Status.PENDING
