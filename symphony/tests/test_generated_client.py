"""A client generated with openapi-python-client from the live schema drives the core flows.

The client is generated once per session into a temporary folder and imported; it talks to the app
in-process through httpx's WSGI transport (the whole middleware stack, no server to start). It raises
on any status code the schema does not document for the operation (``raise_on_unexpected_status``),
so every answer below is one the contract promised.
"""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

GENERATOR = Path(sys.executable).with_name("openapi-python-client")


@pytest.fixture(scope="session")
def client_package(tmp_path_factory: pytest.TempPathFactory, django_db_setup: Any, django_db_blocker: Any) -> Any:
    """The generated package ``symphony_client``, imported (generation is one-off: about 4 s)."""
    if not GENERATOR.exists() and not shutil.which("openapi-python-client"):
        pytest.skip("openapi-python-client is not installed (requirements-dev.txt)")
    from drf_spectacular.generators import SchemaGenerator

    with django_db_blocker.unblock():
        schema = SchemaGenerator().get_schema(request=None, public=True)
    folder = tmp_path_factory.mktemp("generated-client")
    (folder / "schema.json").write_text(json.dumps(schema, default=str))
    (folder / "config.yml").write_text("package_name_override: symphony_client\npost_hooks: []\n")
    command = str(GENERATOR if GENERATOR.exists() else "openapi-python-client")
    result = subprocess.run(
        [command, "generate", "--path", "schema.json", "--config", "config.yml", "--meta", "none", "--overwrite"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr  # nothing skipped
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module("symphony_client")
    finally:
        sys.path.remove(str(folder))
        for name in [m for m in sys.modules if m == "symphony_client" or m.startswith("symphony_client.")]:
            del sys.modules[name]


@pytest.fixture
def connect(client_package: Any, settings: Any) -> Any:
    """``connect(key)``: an AuthenticatedClient on the app under test, refusing undocumented statuses."""
    settings.SYMPHONY_RATELIMIT_DEFAULT = "100000/15m"
    # The WSGI handler would close the test transaction's connection at the end of each request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    transport = httpx.WSGITransport(app=get_wsgi_application())

    def make(key: str) -> Any:
        return client_package.AuthenticatedClient(
            base_url="http://testserver",
            token=key,
            raise_on_unexpected_status=True,
            httpx_args={"transport": transport},
        )

    try:
        yield make
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def _ok(response: Any, *statuses: int) -> Any:
    assert response.status_code in statuses, (response.status_code, response.content[:500])
    return response.parsed


def test_it_drives_the_core_flows_with_the_generated_client(client_package, connect, make_key):
    from symphony_client.api.agent_protocol import agent_claim, agent_heartbeat, tasks_complete
    from symphony_client.api.agents import agents_create
    from symphony_client.api.api_keys import api_keys_create
    from symphony_client.api.audit_events import audit_events_list
    from symphony_client.api.orchestras import orchestras_add_agents, orchestras_create, orchestras_start
    from symphony_client.api.projects import projects_create
    from symphony_client.api.tasks import tasks_create, tasks_retrieve
    from symphony_client.models import (
        AgentWriteRequest,
        ApiKeyCreateRequest,
        ClaimRequest,
        CompleteRequest,
        HeartbeatRequest,
        MembershipRequest,
        OrchestraWriteRequest,
        ProjectInputRequest,
        TaskSubmitRequest,
    )

    admin = connect(make_key("super_admin"))
    # Create a key, then work with it.
    created = _ok(api_keys_create.sync_detailed(client=admin, body=ApiKeyCreateRequest(name="automation")), 201)
    assert created.api_key.startswith("sym_")
    operator = connect(created.api_key)

    # Its own project: the flow does not lean on the default project being there.
    _ok(projects_create.sync_detailed(client=operator, body=ProjectInputRequest(slug="team", name="Team")), 201)
    orchestra = _ok(
        orchestras_create.sync_detailed(client=operator, body=OrchestraWriteRequest(name="main", project="team")), 201
    )
    _ok(orchestras_start.sync_detailed(orchestra.id, client=operator), 200)
    agent = _ok(
        agents_create.sync_detailed(client=operator, body=AgentWriteRequest(name="worker-1", project="team")), 201
    )
    _ok(
        orchestras_add_agents.sync_detailed(orchestra.id, client=operator, body=MembershipRequest(agents=[agent.id])),
        200,
    )
    task = _ok(
        tasks_create.sync_detailed(
            client=operator, body=TaskSubmitRequest(kind="echo", orchestra=orchestra.id, input_={"text": "hi"})
        ),
        201,
    )

    # The worker, with its agent-bound key.
    worker = connect(agent.api_key)
    _ok(agent_heartbeat.sync_detailed(client=worker, body=HeartbeatRequest()), 200)
    claimed = _ok(agent_claim.sync_detailed(client=worker, body=ClaimRequest(max_tasks=1)), 200)
    assert [t.id for t in claimed.tasks] == [task.id]
    lease = claimed.tasks[0]
    _ok(
        tasks_complete.sync_detailed(
            task.id, client=worker, body=CompleteRequest(attempt=lease.attempt, result={"echo": "hi"})
        ),
        200,
    )

    done = _ok(tasks_retrieve.sync_detailed(task.id, client=operator), 200)
    assert done.status.value == "succeeded"
    trail = _ok(audit_events_list.sync_detailed(client=admin, page_size=100), 200)
    types = {event.event_type for event in trail.results}
    assert {
        "apikey.created",
        "project.created",
        "agent.created",
        "task.submitted",
        "task.claimed",
        "task.completed",
    } <= types


def test_it_sees_errors_as_the_documented_error_model(client_package, connect, make_key):
    from symphony_client.api.tasks import tasks_cancel, tasks_list
    from symphony_client.models import CancelRequest, Error

    viewer = connect(make_key("viewer"))

    refused = tasks_cancel.sync_detailed(999999, client=viewer, body=CancelRequest())
    bad_order = tasks_list.sync_detailed(client=viewer, ordering="input")

    assert refused.status_code in (403, 404)
    assert isinstance(refused.parsed, Error)
    assert bad_order.status_code == 400
    assert isinstance(bad_order.parsed, Error)
    assert bad_order.parsed.error.code == "invalid_ordering"
