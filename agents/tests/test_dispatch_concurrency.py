"""Dispatch under contention on PostgreSQL: concurrent claimers through the full HTTP stack."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import connection, models

from agents import services
from agents.models import Task, TaskAttempt
from agents.tests.conftest import Api
from agents.tests.factories import OrchestraFactory, UserFactory

CLAIMERS = 8
TASKS = 500


def _drain(api: Api, completed: list[int], errors: list[str]) -> None:
    """Claim and complete until the queue is empty; runs in its own thread with its own connection."""
    try:
        while True:
            r = api.post("/api/v1/agent/claim/", {"max_tasks": 3})
            if r.status_code != 200:
                errors.append(f"claim {r.status_code} {r.content[:200]!r}")
                return
            tasks = r.json()["tasks"]
            if not tasks:
                return
            for task in tasks:
                done = api.post(f"/api/v1/tasks/{task['id']}/complete/", {"result": task["input"], "attempt": 1})
                if done.status_code == 200:
                    completed.append(task["id"])
                else:
                    errors.append(f"complete {done.status_code} {done.content[:200]!r}")
    except Exception as exc:  # surfaced by the assertion on errors
        errors.append(repr(exc))
    finally:
        connection.close()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_it_completes_every_task_exactly_once_with_8_concurrent_claimers():
    owner = UserFactory(roles=["operator"])
    orchestra = OrchestraFactory(state="running")
    apis = []
    for i in range(CLAIMERS):
        agent, raw = services.agent_create(owner=owner, name=f"claimer-{i}", capabilities=["echo"])
        orchestra.agents.add(agent)
        apis.append(Api(raw))
    Task.objects.bulk_create(
        [
            Task(orchestra=orchestra, kind="echo", input={"n": n}, required_capabilities=["echo"], submitter=owner)
            for n in range(TASKS)
        ]
    )
    completed: list[int] = []
    errors: list[str] = []
    threads = [threading.Thread(target=_drain, args=(api, completed, errors)) for api in apis]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)

    assert errors == []
    counts = Counter(completed)
    assert len(counts) == TASKS
    assert set(counts.values()) == {1}
    assert Task.objects.filter(status="succeeded", attempts=1).count() == TASKS
    assert not Task.objects.exclude(status="succeeded").exists()
    assert TaskAttempt.objects.count() == TASKS  # claimed once each: never handed to two agents
    assert all(t.result == t.input for t in Task.objects.all())
    # The work was spread over the claimers (each took some).
    assert TaskAttempt.objects.values("agent").distinct().count() > 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_claimers_in_two_projects_never_cross_projects():
    from accounts.tests.factories import ProjectFactory

    owner = UserFactory(roles=["operator"])
    apis, per_project = [], 150
    for slug in ("alpha", "beta"):
        project = ProjectFactory(slug=slug)
        orchestra = OrchestraFactory(state="running", project=project, name=f"{slug}-orchestra")
        for i in range(3):
            agent, raw = services.agent_create(
                owner=owner, name=f"{slug}-claimer-{i}", capabilities=["echo"], project=project
            )
            orchestra.agents.add(agent)
            apis.append(Api(raw))
        Task.objects.bulk_create(
            [
                Task(
                    orchestra=orchestra,
                    project=project,
                    kind="echo",
                    input={"n": n},
                    required_capabilities=["echo"],
                    submitter=owner,
                )
                for n in range(per_project)
            ]
        )
    completed: list[int] = []
    errors: list[str] = []
    threads = [threading.Thread(target=_drain, args=(api, completed, errors)) for api in apis]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)

    assert errors == []
    assert sorted(Counter(completed).values()) == [1] * (2 * per_project)
    crossed = TaskAttempt.objects.exclude(agent__project=models.F("task__project"))
    assert not crossed.exists()
    assert TaskAttempt.objects.count() == 2 * per_project
