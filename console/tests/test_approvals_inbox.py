"""The approvals inbox: pending approvals of my projects, decided with a comment through the workflow
service; four-eyes and permission refusals explained before and after the click."""

from __future__ import annotations

import pytest
from django.test import Client

from agents.models import Task
from workflows.models import Approval
from workflows.services import workflow_submit

pytestmark = pytest.mark.django_db

STEPS = [
    {"key": "build", "kind": "echo"},
    {"key": "review", "type": "approval", "depends_on": [], "approvers": "agent:read", "question": "Ship it?",
     "distinct_from_submitter": True, "input": {"version": "1.2"}},
    {"key": "deploy", "kind": "echo", "depends_on": ["review"]},
]  # fmt: skip


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def run(world):
    run, _ = workflow_submit(submitter=world.root, orchestra=world.alpha.orchestra, name="release", steps=STEPS)
    return run


def test_it_lists_my_projects_pending_approvals_with_question_and_data(world, run):
    html = _client(world.operator).get("/admin/console/approvals/").content.decode()
    assert "Ship it?" in html
    assert "1.2" in html
    assert 'value="approve"' in html


def test_it_approves_with_a_comment_and_unblocks_the_workflow(world, run):
    approval = Approval.objects.get(run=run)
    client = _client(world.operator)
    response = client.post(
        f"/admin/console/approvals/{approval.pk}/decide/", {"decision": "approve", "comment": "looks good"}, follow=True
    )
    assert f"Approval #{approval.pk} approved." in response.content.decode()
    approval.refresh_from_db()
    assert (approval.status, approval.comment, approval.decided_by) == ("approved", "looks good", world.operator)
    assert Task.objects.get(workflow=run.pk, step_key="deploy").status == "pending"


def test_it_explains_four_eyes_to_the_submitter(world, run):
    html = _client(world.root).get("/admin/console/approvals/").content.decode()
    assert "Four eyes: you submitted this work" in html
    approval = Approval.objects.get(run=run)
    response = _client(world.root).post(
        f"/admin/console/approvals/{approval.pk}/decide/", {"decision": "approve"}, follow=True
    )
    assert "was not decided" in response.content.decode()
    assert Approval.objects.get(pk=approval.pk).status == "pending"


def test_it_hides_other_projects_approvals(world):
    run, _ = workflow_submit(submitter=world.root, orchestra=world.beta.orchestra, name="beta-release", steps=STEPS)
    client = _client(world.operator)
    assert "beta-release" not in client.get("/admin/console/approvals/").content.decode()
    approval = Approval.objects.get(run=run)
    assert client.post(f"/admin/console/approvals/{approval.pk}/decide/", {"decision": "approve"}).status_code == 404
    assert Approval.objects.get(pk=approval.pk).status == "pending"


def test_it_draws_the_workflow_dag_with_links_to_each_step(world, run):
    html = _client(world.operator).get(f"/admin/workflows/workflowrun/{run.pk}/change/").content.decode()
    svg = html.split('id="console-dag"')[1].split("</svg>")[0]
    for task in Task.objects.filter(workflow=run.pk):
        assert f'href="/admin/agents/task/{task.pk}/change/"' in svg
    assert 'class="node ask"' in svg  # the approval step waits for a decision
    assert 'id="console-wf-cancel"' in html
