"""Submitting a task or a workflow run from the console: the API's rules and service, errors on their
field, the orchestra limited to projects where the user may execute, and no way in for a viewer."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from agents.models import Task
from audit.models import AuditEvent
from workflows.models import WorkflowRun

pytestmark = pytest.mark.django_db

TASKS, RUNS = "/admin/console/tasks/submit/", "/admin/console/workflows/submit/"


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _task_form(orchestra, **overrides) -> dict:
    form = {"orchestra": orchestra.pk, "kind": "echo", "input": '{"text": "hi"}', "priority": "high",
            "required_capabilities": "gpu, python", "max_attempts": "2"}  # fmt: skip
    return {**form, **overrides}


def test_it_submits_a_task_through_the_service_and_goes_to_its_page(world):
    client = _client(world.operator)
    assert 'id="console-submit-task"' in client.get("/admin/agents/task/").content.decode()
    response = client.post(TASKS, _task_form(world.alpha.orchestra))
    task = Task.objects.latest("id")
    assert response.status_code == 302
    assert response["Location"] == f"/admin/agents/task/{task.pk}/change/"
    assert (task.kind, task.input, task.priority_label, task.max_attempts) == ("echo", {"text": "hi"}, "high", 2)
    assert task.required_capabilities == ["gpu", "python"]
    assert task.submitter == world.operator and task.project == world.alpha.project
    event = AuditEvent.objects.get(event_type="task.submitted", resource_id=str(task.pk))
    assert event.actor_name == "alpha-op"
    assert f"Task #{task.pk} submitted." in client.get(response["Location"]).content.decode()


def test_it_shows_invalid_json_and_serializer_errors_on_their_fields(world):
    client = _client(world.operator)
    before = Task.objects.count()
    html = client.post(TASKS, _task_form(world.alpha.orchestra, input='{"text": ')).content.decode()
    assert 'id="row-input"' in html and "Not valid JSON" in html
    html = client.post(TASKS, _task_form(world.alpha.orchestra, input="[1, 2]")).content.decode()
    assert "Must be a JSON object." in html.split('id="row-input"')[1].split('id="row-priority"')[0]
    html = client.post(TASKS, _task_form(world.alpha.orchestra, max_attempts="0")).content.decode()
    assert "greater than or equal to 1" in html.split('id="row-max_attempts"')[1]
    html = client.post(TASKS, _task_form(world.alpha.orchestra, kind="no spaces!")).content.decode()
    assert "errors" in html.split('id="row-kind"')[0][-40:]
    assert Task.objects.count() == before


def test_it_refuses_another_projects_orchestra_as_an_invalid_choice(world):
    client = _client(world.operator)
    html = client.get(TASKS).content.decode()
    assert "alpha-band" in html and "beta-band" not in html
    before = Task.objects.count()
    html = client.post(TASKS, _task_form(world.beta.orchestra)).content.decode()
    assert "Select a valid choice" in html.split('id="row-orchestra"')[1].split('id="row-kind"')[0]
    assert Task.objects.count() == before


def test_it_gives_a_viewer_no_button_and_its_forged_post_a_403(world):
    client = _client(world.viewer)
    assert "console-submit-task" not in client.get("/admin/agents/task/").content.decode()
    assert "console-submit-workflow" not in client.get("/admin/workflows/workflowrun/").content.decode()
    assert client.get(TASKS).status_code == 403
    before = Task.objects.count()
    assert client.post(TASKS, _task_form(world.alpha.orchestra)).status_code == 403
    assert client.post(RUNS, {"orchestra": world.alpha.orchestra.pk, "name": "x", "steps": "[]"}).status_code == 403
    assert Task.objects.count() == before
    assert not AuditEvent.objects.filter(event_type="task.submitted").exists()


def test_it_shows_a_service_refusal_and_writes_nothing(world):
    world.alpha.orchestra.state = "stopped"
    world.alpha.orchestra.save(update_fields=["state"])
    before = Task.objects.count()
    html = _client(world.operator).post(TASKS, _task_form(world.alpha.orchestra)).content.decode()
    assert "is stopped" in html
    assert Task.objects.count() == before


def test_it_starts_a_workflow_run_and_names_a_bad_step(world):
    client = _client(world.operator)
    assert 'id="console-submit-workflow"' in client.get("/admin/workflows/workflowrun/").content.decode()
    steps = [{"key": "a", "kind": "echo"}, {"key": "b", "kind": "echo", "depends_on": ["a"]}]
    form = {"orchestra": world.alpha.orchestra.pk, "name": "release", "steps": json.dumps(steps)}
    response = client.post(RUNS, form)
    run = WorkflowRun.objects.get(name="release")
    assert response["Location"] == f"/admin/workflows/workflowrun/{run.pk}/change/"
    assert run.submitter == world.operator and run.step_count == 2
    bad = [{"key": "a", "kind": "echo", "depends_on": ["nope"]}]
    html = client.post(RUNS, {**form, "name": "broken", "steps": json.dumps(bad)}).content.decode()
    assert "nope" in html.split('id="row-steps"')[1]
    html = client.post(RUNS, {**form, "name": "broken", "steps": json.dumps([{"key": "a"}])}).content.decode()
    assert "a task step needs a kind" in html.split('id="row-steps"')[1]
    assert not WorkflowRun.objects.filter(name="broken").exists()
