from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from audit.models import AuditEvent
from workflows.models import Approval
from workflows.tests.helpers import claim, complete, steps_by_key, submit

pytestmark = pytest.mark.django_db

REVIEWED = [
    {"key": "build", "kind": "echo"},
    {
        "key": "review", "type": "approval", "depends_on": ["build"], "approvers": "orchestra:control",
        "distinct_from_submitter": True, "timeout_seconds": 3600, "question": "Ship it?",
    },
    {"key": "deploy", "kind": "echo", "depends_on": ["review"]},
]  # fmt: skip


def _pending(api):
    return api.get("/api/v1/approvals/", {"status": "pending"}).json()["results"]


def test_an_approval_step_waits_for_a_human_then_the_run_goes_on(operator_api, make_api, make_agent, orchestra):
    worker = make_agent(orchestra=orchestra)
    run_id = submit(operator_api, orchestra, REVIEWED).json()["id"]
    assert _pending(operator_api) == []  # not asked before build succeeded
    (build,) = claim(worker)
    complete(worker, build, "artefact")
    assert steps_by_key(operator_api, run_id)["review"]["status"] == "waiting_approval"
    assert claim(worker) == []  # an approval step is never claimed
    (approval,) = _pending(operator_api)
    assert approval["step_key"] == "review" and approval["question"] == "Ship it?" and approval["expires_at"]

    # The submitter may not decide (distinct_from_submitter), nor may someone without the permission.
    mine = operator_api.post(f"/api/v1/approvals/{approval['id']}/approve/", {"comment": "me"})
    assert mine.status_code == 403 and mine.json()["error"]["code"] == "submitter_cannot_decide"
    viewer = make_api("viewer").post(f"/api/v1/approvals/{approval['id']}/approve/")
    assert viewer.status_code == 403 and "orchestra:control" in viewer.json()["error"]["message"]

    boss = make_api("admin")
    r = boss.post(f"/api/v1/approvals/{approval['id']}/approve/", {"comment": "looks good"})
    assert r.status_code == 200 and r.json()["status"] == "approved" and r.json()["decided_by"] == boss.user.username
    event = AuditEvent.objects.get(event_type="approval.approved")
    assert event.actor_id == boss.user.pk and event.details["comment"] == "looks good"
    (deploy,) = claim(worker)
    assert deploy["upstream"]["review"]["decision"] == "approved"
    complete(worker, deploy)
    assert operator_api.get(f"/api/v1/workflows/{run_id}/").json()["status"] == "succeeded"
    assert boss.post(f"/api/v1/approvals/{approval['id']}/reject/").status_code == 409


def test_a_rejection_fails_the_step_and_cancels_its_dependents(operator_api, make_api, make_agent, orchestra):
    worker = make_agent(orchestra=orchestra)
    run_id = submit(operator_api, orchestra, REVIEWED).json()["id"]
    complete(worker, claim(worker)[0])
    (approval,) = _pending(operator_api)
    make_api("admin").post(f"/api/v1/approvals/{approval['id']}/reject/", {"comment": "no"})
    steps = steps_by_key(operator_api, run_id)
    assert steps["review"]["status"] == "failed" and "no" in steps["review"]["error"]
    assert steps["deploy"]["status"] == "cancelled"
    assert operator_api.get(f"/api/v1/workflows/{run_id}/").json()["status"] == "failed"


def test_an_approval_past_its_timeout_fails_the_step(operator_api, make_agent, orchestra):
    worker = make_agent(orchestra=orchestra)
    run_id = submit(operator_api, orchestra, REVIEWED).json()["id"]
    complete(worker, claim(worker)[0])
    Approval.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    call_command("reap_tasks")
    assert Approval.objects.get().status == "expired"
    assert steps_by_key(operator_api, run_id)["review"]["status"] == "failed"
    assert operator_api.get(f"/api/v1/workflows/{run_id}/").json()["status"] == "failed"


def test_a_holder_asks_mid_task_and_its_next_claim_carries_the_decision(operator_api, make_api, make_agent, orchestra):
    worker = make_agent(orchestra=orchestra)
    task_id = operator_api.post("/api/v1/tasks/", {"orchestra": orchestra.pk, "kind": "tool"}).json()["id"]
    (task,) = claim(worker)
    r = worker.api.post(
        f"/api/v1/tasks/{task_id}/approval/", {"attempt": task["attempt"], "question": "rm -rf?", "data": {"p": 1}}
    )
    assert r.status_code == 201, r.content
    assert operator_api.get(f"/api/v1/tasks/{task_id}/").json()["status"] == "waiting_approval"
    assert complete(worker, task).status_code == 409  # the lease was released
    assert claim(worker) == []
    make_api("admin").post(f"/api/v1/approvals/{r.json()['id']}/reject/", {"comment": "too risky"})
    (again,) = claim(worker)
    assert again["approval"]["decision"] == "rejected" and again["approval"]["comment"] == "too risky"
    assert again["attempt"] == task["attempt"] + 1
    assert complete(worker, again, "skipped").status_code == 200


def test_only_the_holder_may_ask(operator_api, make_agent, orchestra):
    holder, other = make_agent(orchestra=orchestra), make_agent(orchestra=orchestra)
    task_id = operator_api.post("/api/v1/tasks/", {"orchestra": orchestra.pk, "kind": "tool"}).json()["id"]
    (task,) = claim(holder)
    r = other.api.post(f"/api/v1/tasks/{task_id}/approval/", {"attempt": task["attempt"], "question": "?"})
    assert r.status_code == 403
    assert operator_api.post(f"/api/v1/tasks/{task_id}/approval/", {"attempt": 1, "question": "?"}).status_code == 403
