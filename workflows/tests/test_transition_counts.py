"""The statements a transition costs do not grow with the run: pinned for a 10,000-step fan-out and a
1,000-deep chain (issue 12)."""

from __future__ import annotations

import pytest
from django.db import connection

from agents import services as agent_services
from agents.models import Task
from workflows import services
from workflows.models import WorkflowRun

pytestmark = pytest.mark.django_db


def _statements(*, failure: bool = False) -> int:
    """savepoint, the completion or failure (holder UPDATE, attempt UPDATE, re-read: one statement for
    a completion on PostgreSQL; audit), transition (lock the run, one UPDATE of the dependents, audit,
    UPDATE of the run's counter), the project's webhook subscriptions, release. An audit event is one
    INSERT on PostgreSQL (sealed after commit) and three on SQLite (sealed at once). The wake-ups of the
    task's stream subscribers and of the claims waiting for the steps it unblocked go with the COMMIT
    on PostgreSQL (``symphony.db.postgresql``), in no statement of their own."""
    if connection.vendor == "sqlite":
        return 15
    return 11 if failure else 9


def _run(orchestra, user, steps, settings):
    settings.SYMPHONY_WORKFLOW_MAX_STEPS = max(len(steps), 1000)
    run, _ = services.workflow_submit(submitter=user, orchestra=orchestra, name="big", steps=steps)
    return run


def _claim_one(agent, step_key, run):
    Task.objects.filter(workflow=run.pk).exclude(step_key=step_key).filter(status="pending").update(priority=0)
    Task.objects.filter(workflow=run.pk, step_key=step_key).update(priority=3)
    (task,) = agent_services.task_claim(agent=agent)
    assert task.step_key == step_key
    return task


def test_a_fan_out_of_10000_steps_unblocks_in_a_bounded_number_of_statements(
    make_agent, make_user, orchestra, settings, django_assert_num_queries
):
    worker = make_agent(orchestra=orchestra).agent
    steps = [{"key": "root", "kind": "x"}] + [
        {"key": f"s{i}", "kind": "x", "depends_on": ["root"]} for i in range(10_000)
    ]
    run = _run(orchestra, make_user("operator"), steps, settings)
    root = _claim_one(worker, "root", run)
    with django_assert_num_queries(_statements()):
        agent_services.task_complete(task_id=root.pk, agent=worker, attempt=root.last_attempt)
    assert Task.objects.filter(workflow=run.pk, status="pending").count() == 10_000


@pytest.mark.postgres
def test_one_commit_wakes_the_stream_and_the_claims_waiting_for_the_unblocked_steps(
    make_agent, make_user, orchestra, settings
):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL)")
    import json

    worker = make_agent(orchestra=orchestra).agent
    steps = [{"key": "root", "kind": "x"}] + [{"key": f"s{i}", "kind": "x", "depends_on": ["root"]} for i in range(3)]
    run = _run(orchestra, make_user("operator"), steps, settings)
    root = _claim_one(worker, "root", run)
    before = len(connection.pending_notifications)
    agent_services.task_complete(task_id=root.pk, agent=worker, attempt=root.last_attempt)
    stream, pending = [payload for _, payload in connection.pending_notifications[before:]]
    assert stream == str(root.pk)
    woken = json.loads(pending)
    assert (woken["o"], woken["n"]) == (orchestra.pk, 3)  # three steps pending: up to three claims


def test_each_link_of_a_1000_deep_chain_costs_the_same_statements(
    make_agent, make_user, orchestra, settings, django_assert_num_queries
):
    worker = make_agent(orchestra=orchestra).agent
    steps = [{"key": "s0", "kind": "x"}] + [
        {"key": f"s{i}", "kind": "x", "depends_on": [f"s{i - 1}"]} for i in range(1, 1000)
    ]
    run = _run(orchestra, make_user("operator"), steps, settings)
    for i in (0, 1, 500):
        if i == 500:
            Task.objects.filter(workflow=run.pk, step_key__in=[f"s{j}" for j in range(2, 500)]).update(
                status="succeeded"
            )
            Task.objects.filter(workflow=run.pk, step_key="s500").update(status="pending", waiting_on=0)
            WorkflowRun.objects.filter(pk=run.pk).update(steps_left=500)
        task = _claim_one(worker, f"s{i}", run)
        with django_assert_num_queries(_statements()):
            agent_services.task_complete(task_id=task.pk, agent=worker, attempt=task.last_attempt)
    assert Task.objects.get(workflow=run.pk, step_key="s501").status == "pending"


def test_a_failure_cancels_a_1000_deep_chain_in_one_statement(
    make_agent, make_user, orchestra, settings, django_assert_num_queries
):
    worker = make_agent(orchestra=orchestra).agent
    steps = [{"key": "s0", "kind": "x"}] + [
        {"key": f"s{i}", "kind": "x", "depends_on": [f"s{i - 1}"]} for i in range(1, 1000)
    ]
    steps.append({"key": "side", "kind": "x"})
    run = _run(orchestra, make_user("operator"), steps, settings)
    task = _claim_one(worker, "s0", run)
    # fail (UPDATE, attempt, re-read, audit) + lock run, one recursive UPDATE, audit, run counter
    with django_assert_num_queries(_statements(failure=True)):
        agent_services.task_fail(task_id=task.pk, agent=worker, attempt=task.last_attempt, error="x")
    assert Task.objects.filter(workflow=run.pk, status="cancelled").count() == 999
    assert WorkflowRun.objects.get(pk=run.pk).steps_left == 1
