"""Every write operation of the OpenAPI schema refuses unknown body fields and unstorable text.

The operations are read from the schema the code generates, so a new write endpoint is checked
without anyone listing it here. Issue 10: a typo (``required_capability``) was silently dropped and
answered 201, and a lone UTF-16 surrogate in any JSON field was a 500.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from django.apps import apps
from django.test import Client
from drf_spectacular.generators import SchemaGenerator

from accounts.models import Role
from accounts.services import api_key_create
from agents import services as agent_services
from agents.models import Agent, Task
from agents.tests.factories import OrchestraFactory, TaskFactory, UserFactory
from tests.worlds import project_objects

pytestmark = pytest.mark.django_db

WRITE_METHODS = ("post", "put", "patch")
#: Writes only the holder of a task's lease makes.
AGENT_WRITES = ("extend", "complete", "fail", "approval", "children", "events")
#: Rows a refused request may still write: its audit trail, sessions, the key's last-use time.
UNWATCHED_TABLES = {"audit_auditevent", "django_session"}
UNWATCHED_COLUMNS = {"last_used_at", "last_login"}


def _write_operations() -> list[tuple[str, str]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return sorted((path, method) for path, ops in schema["paths"].items() for method in ops if method in WRITE_METHODS)


OPERATIONS = _write_operations()


@dataclass
class World:
    admin_key: str
    agent_key: str
    ids: dict[str, dict[str, Any]]

    def url(self, path: str) -> str:
        """The schema path with its parameters filled with existing objects."""
        resource = path.split("/")[3]  # /api/v1/<resource>/{...}/
        for name, value in self.ids[resource].items():
            path = path.replace("{" + name + "}", str(value))
        assert "{" not in path, path
        return path

    def key_for(self, path: str) -> str:
        """The lease holder's calls go with the agent's key; the operations sent here are all writes."""
        agent_call = path.startswith("/api/v1/agent/") or path.rstrip("/").rsplit("/", 1)[-1] in AGENT_WRITES
        return self.agent_key if agent_call else self.admin_key


@pytest.fixture
def world() -> World:
    admin = UserFactory(username="probe-admin", roles=["super_admin"])
    _, admin_key = api_key_create(owner=admin, name="probe")
    orchestra = OrchestraFactory(name="probe-orchestra")
    agent, agent_key = agent_services.agent_create(owner=admin, name="probe-agent", capabilities=["echo"])
    orchestra.agents.add(agent)
    TaskFactory(orchestra=orchestra)
    [task] = agent_services.task_claim(agent=agent)
    role = Role.objects.create(name="probe-role")
    user = UserFactory(username="probe-user")
    spare, _ = api_key_create(owner=admin, name="spare")
    ids = {
        **project_objects(project=orchestra.project, owner=admin, orchestra=orchestra, running=task),
        "agents": {"id": agent.pk},
        "roles": {"name": role.name},
        "users": {"username": user.username},
        "api-keys": {"prefix": spare.prefix},
        "agent": {},
    }
    return World(admin_key=admin_key, agent_key=agent_key, ids=ids)


def _fingerprint() -> dict[str, int]:
    """A hash of every watched table's rows, so any insert, update or delete shows."""
    snapshot = {}
    for model in apps.get_models(include_auto_created=True):
        meta = model._meta
        if meta.db_table in UNWATCHED_TABLES or meta.proxy or not meta.managed:
            continue
        fields = [f.attname for f in meta.concrete_fields if f.attname not in UNWATCHED_COLUMNS]
        snapshot[meta.db_table] = hash(repr(list(model._base_manager.order_by("pk").values_list(*fields))))
    return snapshot


def _send(world: World, path: str, method: str, body: str) -> Any:
    call = getattr(Client(), method)
    headers = {"Authorization": f"Bearer {world.key_for(path)}"}
    return call(world.url(path), body, content_type="application/json", headers=headers)


def test_it_finds_every_write_operation_in_the_schema():
    assert len(OPERATIONS) >= 30
    assert ("/api/v1/tasks/", "post") in OPERATIONS
    assert ("/api/v1/tasks/{id}/complete/", "post") in OPERATIONS
    assert ("/api/v1/users/{username}/", "patch") in OPERATIONS


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_it_refuses_an_unknown_field_on_every_write(world, path, method):
    before = _fingerprint()
    response = _send(world, path, method, json.dumps({"zz_unknown_field": 1}))

    assert response.status_code == 400, response.content[:300]
    error = response.json()["error"]
    assert error["code"] == "unknown_field"
    assert list(error["details"]) == ["zz_unknown_field"]
    assert error["message"].startswith("zz_unknown_field: Unknown field.")
    assert _fingerprint() == before


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_it_refuses_a_lone_surrogate_on_every_write(world, path, method):
    before = _fingerprint()
    response = _send(world, path, method, '{"note": {"items": ["ok", "\\ud800"]}}')

    assert response.status_code == 400, response.content[:300]
    error = response.json()["error"]
    assert error["code"] == "parse_error"
    assert list(error["details"]) == ["note.items[1]"]
    assert "surrogate" in error["message"]
    assert _fingerprint() == before


@pytest.mark.parametrize(
    ("path", "method", "body", "field"),
    [
        # The six 500s of issue 10, each inside the field the endpoint reads.
        ("/api/v1/tasks/", "post", {"kind": "echo", "input": {"text": "\ud800"}}, "input.text"),
        ("/api/v1/agents/{id}/execute/", "post", {"kind": "echo", "input": {"\udfff": 1}}, "input.\\udfff"),
        ("/api/v1/agents/", "post", {"name": "new", "metadata": {"a": "\ud800"}}, "metadata.a"),
        ("/api/v1/agents/{id}/", "patch", {"metadata": {"a": ["\ud800"]}}, "metadata.a[0]"),
        ("/api/v1/agent/heartbeat/", "post", {"metrics": {"load": "\ud800"}}, "metrics.load"),
        ("/api/v1/tasks/{id}/complete/", "post", {"attempt": 1, "result": "\ud800"}, "result"),
        ("/api/v1/tasks/{id}/fail/", "post", {"attempt": 1, "error": "x\udc00"}, "error"),
    ],
)
def test_it_names_the_field_holding_a_lone_surrogate(world, path, method, body, field):
    before = _fingerprint()
    response = _send(world, path, method, json.dumps(body))  # ensure_ascii: the surrogate as an escape

    assert response.status_code == 400
    assert list(response.json()["error"]["details"]) == [field]
    assert response.json()["error"]["message"].startswith(f"{field}: ")
    assert _fingerprint() == before
    assert Task.objects.get(pk=world.ids["tasks"]["id"]).status == "running"


def test_it_accepts_a_valid_surrogate_pair(world):
    response = _send(world, "/api/v1/agents/{id}/", "patch", json.dumps({"metadata": {"mood": "\U0001f600"}}))

    assert response.status_code == 200, response.content
    assert Agent.objects.get(name="probe-agent").metadata == {"mood": "\U0001f600"}


def test_it_names_a_mistyped_field_and_the_known_ones(world):
    body = {"orchestra": world.ids["orchestras"]["id"], "kind": "echo", "required_capability": ["gpu"]}
    tasks = Task.objects.count()
    response = _send(world, "/api/v1/tasks/", "post", json.dumps(body))

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["details"] == {
        "required_capability": [
            "Unknown field. Known fields: concurrency_key, fairness_key, idempotency_key, input, kind, "
            "max_attempts, orchestra, priority, required_capabilities."
        ]
    }
    assert Task.objects.count() == tasks


@pytest.mark.parametrize("value", ["a string", ["a", "list"], 3, None])
def test_it_requires_task_input_to_be_a_json_object(world, value):
    body = {"orchestra": world.ids["orchestras"]["id"], "kind": "echo", "input": value}
    tasks = Task.objects.count()
    response = _send(world, "/api/v1/tasks/", "post", json.dumps(body))

    assert response.status_code == 400
    assert list(response.json()["error"]["details"]) == ["input"]
    assert Task.objects.count() == tasks


def test_it_still_accepts_an_empty_body_on_an_action_that_reads_none(world):
    client = Client()
    headers = {"Authorization": f"Bearer {world.admin_key}"}
    url = world.url("/api/v1/orchestras/{id}/pause/")
    assert client.post(url, headers=headers).status_code == 200  # an empty multipart form
    url = world.url("/api/v1/orchestras/{id}/resume/")
    assert client.post(url, "{}", content_type="application/json", headers=headers).status_code == 200
    assert client.post(url, "x=1", content_type="text/plain", headers=headers).status_code == 415
