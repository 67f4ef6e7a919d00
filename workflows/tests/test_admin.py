"""The operator console: workflow runs with their steps, cancel and retry; approvals approved or rejected."""

from __future__ import annotations

import pytest
from django.test import Client

from agents.tests.factories import UserFactory
from workflows.models import Approval, WorkflowRun
from workflows.tests.helpers import submit

pytestmark = pytest.mark.django_db


def _staff(*roles: str) -> Client:
    client = Client()
    client.force_login(UserFactory(roles=list(roles), is_staff=True))
    return client


STEPS = [
    {"key": "build", "kind": "echo"},
    {"key": "review", "type": "approval", "approvers": "orchestra:control"},
    {"key": "ship", "kind": "echo", "depends_on": ["build", "review"]},
]


def test_it_lists_runs_shows_their_steps_and_cancels_then_retries(operator_api, orchestra):
    run_id = submit(operator_api, orchestra, STEPS, name="release 1.2").json()["id"]
    admin = _staff("operator")
    page = admin.get("/admin/workflows/workflowrun/", {"status__exact": "running"}).content.decode()
    assert "release 1.2" in page
    detail = admin.get(f"/admin/workflows/workflowrun/{run_id}/change/").content.decode()
    assert "review" in detail and "waiting_approval" in detail and "build, review" in detail
    r = admin.post("/admin/workflows/workflowrun/", {"action": "cancel", "_selected_action": [run_id]}, follow=True)
    assert "Cancelled 1 workflow runs" in r.content.decode()
    assert WorkflowRun.objects.get(pk=run_id).status == "cancelled"
    admin.post("/admin/workflows/workflowrun/", {"action": "retry", "_selected_action": [run_id]})
    assert WorkflowRun.objects.get(pk=run_id).status == "running"


def test_it_approves_from_the_admin_and_explains_a_refusal(operator_api, orchestra):
    submit(operator_api, orchestra, STEPS)
    approval = Approval.objects.get(status="pending")
    viewer = _staff("viewer")
    assert "review" in viewer.get("/admin/workflows/approval/", {"status__exact": "pending"}).content.decode()
    refused = viewer.post(
        "/admin/workflows/approval/", {"action": "approve", "_selected_action": [approval.pk]}, follow=True
    )
    assert "orchestra:control" in refused.content.decode()
    admin = _staff("admin")
    admin.post("/admin/workflows/approval/", {"action": "approve", "_selected_action": [approval.pk]})
    approval.refresh_from_db()
    assert approval.status == "approved" and approval.task.status == "succeeded"


def test_seed_demo_workflow_submits_one_run_with_an_approval_once(capsys, settings, tmp_path):
    from django.core.management import call_command

    settings.VAR_DIR = tmp_path  # seed_demo writes its keys there
    call_command("seed_demo")
    call_command("seed_demo_workflow")
    call_command("seed_demo_workflow")
    run = WorkflowRun.objects.get()
    assert run.has_approvals and run.step_count == 5
    assert "already submitted" in capsys.readouterr().out
