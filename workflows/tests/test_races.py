"""Transitions under contention on PostgreSQL, with concurrent threads through the HTTP stack."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from agents import services as agent_services
from agents.models import Task
from agents.tests.conftest import Api
from agents.tests.factories import OrchestraFactory, UserFactory
from tests.races import behind_a_held_transaction
from workflows import services
from workflows.models import WorkflowRun

ROUNDS = 10


def _together(*calls: Callable[[], Any]) -> list[Any]:
    """Run ``calls`` in threads released by one barrier; return their results (or exceptions)."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = calls[i]()
        except Exception as exc:
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _fleet(count: int) -> tuple[Any, Any, list[tuple[Any, Api]]]:
    owner = UserFactory(roles=["operator"])
    orchestra = OrchestraFactory(state="running")
    agents = []
    for i in range(count):
        agent, raw = agent_services.agent_create(owner=owner, name=f"racer-{i}")
        orchestra.agents.add(agent)
        agents.append((agent, Api(raw)))
    return owner, orchestra, agents


def _complete(api: Api, task: Task) -> Callable[[], int]:
    return lambda: api.post(f"/api/v1/tasks/{task.pk}/complete/", {"attempt": task.last_attempt}).status_code


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_agents_completing_the_two_last_parents_start_the_child_exactly_once():
    owner, orchestra, [(a1, api1), (a2, api2)] = _fleet(2)
    for _ in range(ROUNDS):
        run, _ = services.workflow_submit(
            submitter=owner, orchestra=orchestra, name="join",
            steps=[{"key": "a", "kind": "x"}, {"key": "b", "kind": "x"},
                   {"key": "c", "kind": "x", "depends_on": ["a", "b"]}],
        )  # fmt: skip
        (t1,) = agent_services.task_claim(agent=a1)
        (t2,) = agent_services.task_claim(agent=a2)
        assert _together(_complete(api1, t1), _complete(api2, t2)) == [200, 200]
        child = Task.objects.get(workflow=run.pk, step_key="c")
        assert (child.status, child.waiting_on) == ("pending", 0)
        claimed = agent_services.task_claim(agent=a1, max_tasks=5) + agent_services.task_claim(agent=a2, max_tasks=5)
        assert [t.step_key for t in claimed] == ["c"]
        agent_services.task_complete(task_id=claimed[0].pk, agent=claimed[0].agent, attempt=1)
        assert WorkflowRun.objects.get(pk=run.pk).status == "succeeded"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_cancel_racing_a_completion_ends_in_one_consistent_state():
    owner, orchestra, [(agent, api)] = _fleet(1)
    for _ in range(ROUNDS):
        run, _ = services.workflow_submit(
            submitter=owner, orchestra=orchestra, name="race",
            steps=[{"key": "a", "kind": "x"}, {"key": "b", "kind": "x", "depends_on": ["a"]}],
        )  # fmt: skip
        (task,) = agent_services.task_claim(agent=agent)
        cancelled, completed = _together(
            lambda run=run: services.workflow_cancel(run_id=run.pk, actor=owner).status, _complete(api, task)
        )
        assert cancelled == "cancelled", cancelled
        assert completed in (200, 409)
        a, b = Task.objects.filter(workflow=run.pk).order_by("id")
        assert a.status == ("succeeded" if completed == 200 else "cancelled")
        assert b.status == "cancelled"  # never started after the run was cancelled
        assert WorkflowRun.objects.get(pk=run.pk).status == "cancelled"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_child_finishing_while_its_parent_completes_is_counted_off():
    """The last child's completion is still uncommitted when its parent's holder completes with
    ``wait_for_children``: the parent must end succeeded, not wait for a child already counted."""
    owner, orchestra, [(agent, _api)] = _fleet(1)
    agent_services.task_submit(submitter=owner, orchestra=orchestra, kind="x")
    (parent,) = agent_services.task_claim(agent=agent)
    (child,) = agent_services.task_children_create(
        task_id=parent.pk, agent=agent, attempt=parent.last_attempt, children=[{"kind": "x"}]
    )
    (claimed,) = agent_services.task_claim(agent=agent)
    assert claimed.pk == child.pk
    # the child's completion is committed only once the parent's completion waits on its lock
    behind_a_held_transaction(
        lambda: agent_services.task_complete(task_id=child.pk, agent=agent, attempt=claimed.last_attempt),
        lambda: agent_services.task_complete(
            task_id=parent.pk, agent=agent, attempt=parent.last_attempt, wait_for_children=True
        ),
    )

    parent.refresh_from_db()
    assert (parent.status, parent.waiting_on) == ("succeeded", 0)
    assert [c["id"] for c in parent.result["children_results"]] == [child.pk]
