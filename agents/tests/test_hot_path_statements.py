"""SQL statements per agent-protocol call and per submission, pinned exactly on PostgreSQL.

These are the hot paths of dispatch (claim, complete, heartbeat, submit): one more statement on any
of them is a cost every task pays, so a change that adds one must change the count here on purpose.
The counts are as the test client sees them: the service's transaction is a savepoint inside the
test's (SAVEPOINT + RELEASE: two statements that are BEGIN/COMMIT in production, where the driver
does not count them), and the after-commit callbacks run inside the count
(``django_capture_on_commit_callbacks``): the audit seal's only wakes the process's background
sealer, which seals in batches on a connection of its own (docs/audit.md), so it adds none. The
wake-ups (``pg_notify``) are held back and sent with the COMMIT, in its round trip
(``symphony.db.postgresql``): the tests read them where they wait (``notified``).
``_production`` subtracts those savepoints, for the figures
quoted in docs/SCALING.md (where a service nests savepoints of its own, the test says so).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents.tests.factories import TaskFactory

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


@contextmanager
def statements(expected: int, capture: Any) -> Iterator[CaptureQueriesContext]:
    """Assert exactly ``expected`` statements (listing them all when the count differs)."""
    with CaptureQueriesContext(connection) as context, capture(execute=True):
        yield context
    sql = [query["sql"] for query in context.captured_queries]
    assert len(sql) == expected, "\n".join(f"{i}. {s[:200]}" for i, s in enumerate(sql, 1))


@contextmanager
def notified() -> Iterator[list[str]]:
    """The payloads queued for the commit inside the block (the test's transaction never commits)."""
    before = len(connection.pending_notifications)
    payloads: list[str] = []
    yield payloads
    payloads.extend(payload for _, payload in connection.pending_notifications[before:])


def _production(context: CaptureQueriesContext) -> int:
    return sum(1 for q in context.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT")))


@pytest.fixture
def warm(make_agent, orchestra, operator_api, django_capture_on_commit_callbacks):
    """An agent with one claim, one heartbeat and one submission behind it: keys cached, chain started."""
    worker = make_agent(orchestra=orchestra)
    TaskFactory.create_batch(12, orchestra=orchestra)
    with django_capture_on_commit_callbacks(execute=True):
        assert worker.api.post("/api/v1/agent/claim/", {}).status_code == 200
        assert worker.api.post("/api/v1/agent/heartbeat/", {"status": "busy"}).status_code == 200
        body = {"orchestra": orchestra.pk, "kind": "echo", "input": {}}
        assert operator_api.post("/api/v1/tasks/", body).status_code == 201
    return worker


def _claim(worker: Any, **body: Any) -> list[dict[str, Any]]:
    response = worker.api.post("/api/v1/agent/claim/", body)
    assert response.status_code == 200, response.json()
    return response.json()["tasks"]


def test_it_claims_one_task_in_six_statements(warm, django_capture_on_commit_callbacks):
    # the agent; [savepoint] the locking select (spent budgets, full concurrency keys and whether any
    # lease expired are its subqueries), the update with the insert of its attempt (one statement),
    # the event [release]; the stream's wake-up goes with the commit; no seal on this connection
    with statements(6, django_capture_on_commit_callbacks) as context, notified() as payloads:
        [task] = _claim(warm)
    assert payloads == [str(task["id"])]
    assert _production(context) == 4


def test_a_claim_that_finds_an_expired_lease_reaps_it_first_and_may_take_it(warm, django_capture_on_commit_callbacks):
    from agents.models import Task

    [held] = _claim(warm)
    assert Task.objects.filter(status="pending").exists()  # other work is waiting, below it once requeued
    expired = timezone.now() - timedelta(seconds=1)
    Task.objects.filter(pk=held["id"]).update(lease_expires_at=expired, priority=Task.Priority.URGENT)
    with django_capture_on_commit_callbacks(execute=True):
        [again] = _claim(warm)
    assert (again["id"], again["attempt"]) == (held["id"], held["attempt"] + 1)


def test_a_claim_that_finds_no_work_still_reaps_an_expired_lease(warm, django_capture_on_commit_callbacks):
    from agents.models import Task

    [held] = _claim(warm)
    Task.objects.exclude(pk=held["id"]).delete()
    Task.objects.filter(pk=held["id"]).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1), max_attempts=held["attempt"]
    )  # no attempt left: reaping fails it instead of queueing it again
    with django_capture_on_commit_callbacks(execute=True):
        assert _claim(warm) == []
    assert Task.objects.get(pk=held["id"]).status == "failed"


def test_it_completes_a_task_in_six_statements(warm, django_capture_on_commit_callbacks):
    [task] = _claim(warm)
    # the agent; [savepoint] the fenced update with its attempt's and the task read back (one
    # statement), the event, the webhooks outbox lookup [release]; the wake-up goes with the commit
    with statements(6, django_capture_on_commit_callbacks) as context, notified() as payloads:
        body = {"attempt": task["attempt"], "result": {"ok": True}}
        assert warm.api.post(f"/api/v1/tasks/{task['id']}/complete/", body).status_code == 200
    assert payloads == [str(task["id"])]
    assert _production(context) == 4


def test_it_heartbeats_in_one_statement(warm, django_capture_on_commit_callbacks):
    # the agent behind the key, its update and its held tasks that were cancelled, in one statement
    # (not audited: nothing to seal)
    with statements(1, django_capture_on_commit_callbacks):
        assert warm.api.post("/api/v1/agent/heartbeat/", {"status": "busy"}).status_code == 200


def test_it_submits_a_task_in_seven_statements(warm, orchestra, operator_api, django_capture_on_commit_callbacks):
    # the orchestra with its project; [savepoint] the budgets, the fair-queue position, the insert,
    # the event [release]; the wake-up of a claim waiting for work (agents/claim_wait.py) goes with
    # the commit. With an idempotency key the insert has a savepoint of its own (the next test).
    with statements(7, django_capture_on_commit_callbacks) as context, notified() as payloads:
        body = {"orchestra": orchestra.pk, "kind": "echo", "input": {}}
        assert operator_api.post("/api/v1/tasks/", body).status_code == 201
    [notify] = payloads
    assert f'"o":{orchestra.pk}' in notify  # the pending payload names the orchestra whose members may claim
    assert _production(context) == 5


def test_an_idempotency_key_adds_the_savepoint_that_catches_a_lost_race(
    warm, orchestra, operator_api, django_capture_on_commit_callbacks
):
    # as above, plus the look-up of an earlier task with the key and [savepoint] [release] around the
    # insert, so that losing the race to a concurrent submission answers with the winner's task
    with statements(10, django_capture_on_commit_callbacks) as context:
        body = {"orchestra": orchestra.pk, "kind": "echo", "input": {}, "idempotency_key": "order-1"}
        assert operator_api.post("/api/v1/tasks/", body).status_code == 201
    assert _production(context) == 6


def test_it_claims_ten_tasks_in_as_many_statements_as_one(warm, django_capture_on_commit_callbacks):
    # the same six: one update with the insert of the attempts, one insert of the events
    with statements(6, django_capture_on_commit_callbacks) as context, notified() as payloads:
        tasks = _claim(warm, max_tasks=10)
    assert payloads == [str(t["id"]) for t in tasks] and len(tasks) == 10
    assert _production(context) == 4


def test_it_completes_ten_tasks_in_one_request_in_as_many_statements_as_one(warm, django_capture_on_commit_callbacks):
    tasks = _claim(warm, max_tasks=10)
    results = [{"task": t["id"], "attempt": t["attempt"], "result": {"ok": True}} for t in tasks]
    # the agent; [savepoint] the fenced update of the ten with their attempts' and the read back (one
    # statement), their events, the webhooks lookup (once for the batch) [release]; the wake-ups go
    # with the commit
    with statements(1 + 2 + 3, django_capture_on_commit_callbacks) as context, notified() as payloads:
        response = warm.api.post("/api/v1/agent/complete/", {"results": results})
    assert response.json()["completed"] == 10
    assert sorted(payloads) == sorted(str(t["id"]) for t in tasks)
    assert _production(context) == 1 + 3
