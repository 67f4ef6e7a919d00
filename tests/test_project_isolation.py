"""The isolation sweep: as a key of project alpha, every operation of the OpenAPI schema that names an
object of project beta answers as if it did not exist (404), and no list shows one of beta's objects.

Agent-protocol calls go with alpha's agent key, everything else with a key of a user bound in alpha
as operator and analyst. The number of operations covered is asserted, so a new endpoint is swept
as soon as it is in the schema.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from drf_spectacular.generators import SchemaGenerator

import audit
from accounts.models import Role, RoleBinding
from accounts.services import api_key_create
from agents import services as agent_services
from agents.flow_models import Budget, ConcurrencyLimit
from agents.models import Agent, Orchestra, Task
from agents.tests.factories import OrchestraFactory, TaskFactory, UserFactory
from tests.worlds import project_objects
from webhooks.models import Delivery, Webhook
from workflows.models import Approval, WorkflowRun
from workflows.scheduling.models import Schedule

pytestmark = pytest.mark.django_db

#: Resources whose objects belong to a project, and the schema parameter naming one.
OWNED = {
    "agents": "id", "orchestras": "id", "tasks": "id", "projects": "slug", "audit-events": "id",
    "workflows": "id", "approvals": "id", "schedules": "id", "webhooks": "id", "webhook-deliveries": "id",
    "budgets": "id", "concurrency-limits": "id",
}  # fmt: skip
#: Calls only the holder of a task's lease makes (with an agent key), and a valid body for each.
AGENT_CALLS = {
    ("extend", "post"): {},
    ("complete", "post"): {"result": {}},
    ("fail", "post"): {"error": "x"},
    ("approval", "post"): {"question": "ok?"},
    ("children", "post"): {"children": [{"kind": "echo"}]},
    ("events", "post"): {"type": "log"},
}


def _agent_call(path: str, method: str) -> bool:
    return (path.rstrip("/").rsplit("/", 1)[-1], method) in AGENT_CALLS or path.startswith("/api/v1/agent/")


def _operations() -> list[tuple[str, str]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return sorted((path, method) for path, ops in schema["paths"].items() for method in ops if method != "parameters")


OPERATIONS = _operations()
OBJECT_OPERATIONS = [(p, m) for p, m in OPERATIONS if p.split("/")[3] in OWNED and "{" in p]
LIST_OPERATIONS = [(p, m) for p, m in OPERATIONS if m == "get" and "{" not in p]


def _world(project_factory: Any) -> dict[str, Any]:
    world: dict[str, Any] = {}
    for slug in ("alpha", "beta"):
        project = project_factory(slug=slug)
        owner = UserFactory(username=f"{slug}-owner")
        for role in ("operator", "analyst"):
            RoleBinding.objects.create(user=owner, role=Role.objects.get(name=role), project=project)
        _, key = api_key_create(owner=owner, name=f"{slug}-key", project=project)
        orchestra = OrchestraFactory(project=project, name=f"{slug}-orchestra", state=Orchestra.State.RUNNING)
        agent, agent_key = agent_services.agent_create(
            owner=owner, name=f"{slug}-agent", capabilities=["echo"], project=project
        )
        orchestra.agents.add(agent)
        TaskFactory(orchestra=orchestra, submitter=owner)
        [running] = agent_services.task_claim(agent=agent)
        pending = TaskFactory(orchestra=orchestra, submitter=owner)
        event = audit.record("resource.created", project=slug, details={"secret": f"{slug}-only"})
        ids = {
            resource: next(iter(params.values()))
            for resource, params in project_objects(
                project=project, owner=owner, orchestra=orchestra, running=running
            ).items()
        }
        world[slug] = {
            "key": key,
            "agent_key": agent_key,
            "ids": {**ids, "agents": agent.pk, "audit-events": event.pk},
            "pending": pending.pk,
        }
    return world


def _call(key: str, method: str, path: str) -> Any:
    send = getattr(Client(), method)
    headers = {"Authorization": f"Bearer {key}"}
    if method in ("get", "delete", "head"):
        return send(path, headers=headers)
    return send(path, json.dumps({}), content_type="application/json", headers=headers)


def _call_with(key: str, method: str, path: str, body: dict[str, Any]) -> Any:
    send = getattr(Client(), method)
    return send(path, json.dumps(body), content_type="application/json", headers={"Authorization": f"Bearer {key}"})


def _snapshot() -> list[Any]:
    return [
        list(model.objects.order_by("pk").values_list(*[f.attname for f in model._meta.concrete_fields]))
        for model in (
            Agent,
            Orchestra,
            Task,
            WorkflowRun,
            Approval,
            Schedule,
            Webhook,
            Delivery,
            Budget,
            ConcurrencyLimit,
        )
    ]


def test_as_alpha_every_url_of_a_beta_object_answers_404(project_factory: Any) -> None:
    world = _world(project_factory)
    alpha, beta = world["alpha"], world["beta"]
    before = _snapshot()
    answered: dict[tuple[str, str], int] = {}
    for path, method in OBJECT_OPERATIONS:
        resource, name = path.split("/")[3], OWNED[path.split("/")[3]]
        url = path.replace("{" + name + "}", str(beta["ids"][resource]))
        agent_call = _agent_call(path, method)
        key = alpha["agent_key"] if agent_call else alpha["key"]
        response = _call(key, method, url)
        answered[(path, method)] = response.status_code
        assert "beta" not in response.content.decode(), (path, method)
        if agent_call and response.status_code == 400:
            # The lease calls validate the body first: the same 400 as for a task that does not
            # exist, so nothing is learnt. With a valid body they answer 404 (asserted below).
            missing = _call(key, method, path.replace("{" + name + "}", "999999"))
            assert (missing.status_code, missing.json()["error"]["code"]) == (400, response.json()["error"]["code"])
            valid = AGENT_CALLS[path.rstrip("/").rsplit("/", 1)[-1], method]
            response = _call_with(key, method, url, {"attempt": 1, **valid})
            answered[(path, method)] = response.status_code
    wrong = {op: status for op, status in answered.items() if status != 404}
    assert not wrong, sorted(wrong.items())
    assert _snapshot() == before, "a request into beta changed something"
    # Every operation on an object of a project-owned resource in the schema was swept.
    assert len(answered) == len(OBJECT_OPERATIONS) >= 20
    print(f"isolation sweep: {len(answered)} object operations answered 404")


def test_as_alpha_no_list_shows_a_beta_object(project_factory: Any) -> None:
    world = _world(project_factory)
    alpha = world["alpha"]
    for path, _ in LIST_OPERATIONS:
        for key in (alpha["key"], alpha["agent_key"]):
            response = _call(key, "get", path)
            body = b"".join(response.streaming_content) if response.streaming else response.content
            assert b"beta" not in body, path
    assert len(LIST_OPERATIONS) >= 8
    print(f"isolation sweep: {len(LIST_OPERATIONS)} list operations showed no beta object")
