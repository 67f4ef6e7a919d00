"""The agent protocol: heartbeat, claim, extend, complete, fail, lease expiry, over HTTP."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.core.management import call_command
from django.utils import timezone

from agents.models import Agent, Task
from agents.tests.factories import OrchestraFactory, TaskFactory
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def claim(worker, **body):
    r = worker.api.post("/api/v1/agent/claim/", body)
    assert r.status_code == 200, r.json()
    return r.json()["tasks"]


def test_it_claims_with_the_documented_shape_and_leases_the_task(make_agent, orchestra):
    worker = make_agent(orchestra=orchestra)
    task = TaskFactory(orchestra=orchestra, traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    [claimed] = claim(worker)
    assert claimed["id"] == task.pk
    assert claimed["kind"] == "echo"
    assert claimed["input"] == {"text": "hello"}
    assert claimed["attempt"] == 1
    assert claimed["traceparent"] == task.traceparent
    task.refresh_from_db()
    assert task.status == "running"
    assert task.agent == worker.agent
    assert task.lease_expires_at - task.claimed_at == timedelta(seconds=60)
    assert AuditEvent.objects.filter(event_type="task.claimed", resource_id=str(task.pk)).exists()
    assert claim(worker) == []  # nothing else to take


def test_it_bounds_the_requested_lease(make_agent, orchestra, settings):
    settings.SYMPHONY_TASK_MAX_LEASE_SECONDS = 120
    worker = make_agent(orchestra=orchestra)
    TaskFactory(orchestra=orchestra)
    claim(worker, lease_seconds=99999)
    task = Task.objects.get()
    assert task.lease_expires_at - task.claimed_at == timedelta(seconds=120)


def test_it_offers_only_tasks_whose_capabilities_the_agent_has(make_agent, orchestra):
    worker = make_agent(capabilities=["echo", "python"], orchestra=orchestra)
    fits = TaskFactory(orchestra=orchestra, required_capabilities=["python"])
    fits_all = TaskFactory(orchestra=orchestra, required_capabilities=["echo", "python"])
    none_needed = TaskFactory(orchestra=orchestra, required_capabilities=[])
    TaskFactory(orchestra=orchestra, required_capabilities=["gpu"])
    TaskFactory(orchestra=orchestra, required_capabilities=["python", "gpu"])
    claimed = {t["id"] for t in claim(worker, max_tasks=10)}
    assert claimed == {fits.pk, fits_all.pk, none_needed.pk}


def test_it_dispatches_only_from_running_orchestras_the_agent_belongs_to(make_agent):
    running = OrchestraFactory(state="running")
    paused = OrchestraFactory(state="paused")
    draft = OrchestraFactory(state="draft")
    foreign = OrchestraFactory(state="running")
    worker = make_agent()
    for orchestra in (running, paused, draft):
        orchestra.agents.add(worker.agent)
    ok = TaskFactory(orchestra=running)
    for orchestra in (paused, draft, foreign):
        TaskFactory(orchestra=orchestra)
    assert [t["id"] for t in claim(worker, max_tasks=10)] == [ok.pk]


def test_it_dispatches_again_when_a_paused_orchestra_resumes(make_agent, operator_api, orchestra):
    worker = make_agent(orchestra=orchestra)
    TaskFactory(orchestra=orchestra)
    assert operator_api.post(f"/api/v1/orchestras/{orchestra.pk}/pause/").status_code == 200
    assert claim(worker) == []
    assert operator_api.post(f"/api/v1/orchestras/{orchestra.pk}/resume/").status_code == 200
    assert len(claim(worker)) == 1


def test_it_claims_highest_priority_first_then_oldest(make_agent, orchestra):
    worker = make_agent(orchestra=orchestra)
    now = timezone.now()
    low = TaskFactory(orchestra=orchestra, priority=Task.Priority.LOW, created_at=now - timedelta(hours=2))
    old_normal = TaskFactory(orchestra=orchestra, priority=Task.Priority.NORMAL, created_at=now - timedelta(hours=1))
    new_normal = TaskFactory(orchestra=orchestra, priority=Task.Priority.NORMAL, created_at=now)
    urgent = TaskFactory(orchestra=orchestra, priority=Task.Priority.URGENT, created_at=now)
    order = [claim(worker)[0]["id"] for _ in range(4)]
    assert order == [urgent.pk, old_normal.pk, new_normal.pk, low.pk]


def test_it_refuses_the_protocol_to_keys_not_bound_to_an_agent(operator_api, orchestra):
    for path in ("/api/v1/agent/claim/", "/api/v1/agent/heartbeat/"):
        r = operator_api.post(path)
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "agent_key_required"
    task = TaskFactory(orchestra=orchestra)
    assert operator_api.post(f"/api/v1/tasks/{task.pk}/complete/", {"result": 1, "attempt": 1}).status_code == 403


def test_it_requires_authentication_for_the_protocol(client):
    assert client.post("/api/v1/agent/claim/", {}, content_type="application/json").status_code == 401


def test_it_lists_held_cancelled_tasks_in_the_heartbeat(make_agent, operator_api, orchestra):
    worker = make_agent(orchestra=orchestra)
    task = TaskFactory(orchestra=orchestra)
    claim(worker)
    assert worker.api.post("/api/v1/agent/heartbeat/").json()["cancelled_tasks"] == []
    operator_api.post(f"/api/v1/tasks/{task.pk}/cancel/")
    body = worker.api.post("/api/v1/agent/heartbeat/", {"status": "busy", "metrics": {"load": 0.5}}).json()
    assert body["cancelled_tasks"] == [task.pk]
    assert body["status"] == "busy"
    # Completing a cancelled task is refused: the lease is gone.
    r = worker.api.post(f"/api/v1/tasks/{task.pk}/complete/", {"result": "late", "attempt": 1})
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "task_cancelled"


def test_a_heartbeat_merges_its_metrics_into_the_metadata_and_keeps_the_rest(make_agent):
    worker = make_agent()
    Agent.objects.filter(pk=worker.agent.pk).update(metadata={"team": "ml", "last_metrics": {"old": 1}}, version="1.0")
    body = worker.api.post("/api/v1/agent/heartbeat/", {"metrics": {"load": 0.5, "nested": {"gpu": [1, 2]}}}).json()
    assert body["agent"] == worker.agent.pk and body["status"] == "active"
    worker.agent.refresh_from_db()
    assert worker.agent.metadata == {"team": "ml", "last_metrics": {"load": 0.5, "nested": {"gpu": [1, 2]}}}
    assert worker.agent.version == "1.0"  # not sent: kept
    assert worker.agent.last_heartbeat_at is not None and worker.agent.is_online
    worker.api.post("/api/v1/agent/heartbeat/", {"version": "", "status": "idle"})
    worker.agent.refresh_from_db()
    assert (worker.agent.version, worker.agent.status) == ("", "idle")
    assert worker.agent.metadata["last_metrics"] == {"load": 0.5, "nested": {"gpu": [1, 2]}}  # no metrics: kept


@pytest.mark.postgres
def test_a_heartbeat_relaxes_only_a_commit_of_its_own(make_agent):
    """Its own transaction commits without waiting for the WAL flush; an enclosing one (here the test's,
    still open after the request) keeps its durability, and nothing leaks to the next statement."""
    from django.db import connection, transaction

    from agents import services

    worker = make_agent()
    assert worker.api.post("/api/v1/agent/heartbeat/", {"status": "busy"}).status_code == 200
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone() == ("on",)
    with transaction.atomic():
        beat = services.heartbeat_for_key(api_key=worker.agent.api_key, status="idle")
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone() == ("on",)
    assert beat.status == "idle"


def test_a_heartbeat_that_is_no_agents_is_refused_before_its_body_is_judged(operator_api, make_agent):
    r = operator_api.post("/api/v1/agent/heartbeat/", {"status": "nonsense"})
    assert (r.status_code, r.json()["error"]["code"]) == (403, "agent_key_required")
    r = make_agent().api.post("/api/v1/agent/heartbeat/", {"status": "nonsense"})
    assert r.status_code == 400 and "status" in r.json()["error"]["details"]


def test_the_agent_behind_a_key_is_loaded_as_the_orm_loads_it(make_agent, django_assert_num_queries):
    from agents.selectors import agent_for_key

    worker = make_agent(capabilities=["echo", "gpu"])
    Agent.objects.filter(pk=worker.agent.pk).update(metadata={"a": [1, {"b": None}]}, last_heartbeat_at=timezone.now())
    expected = Agent.objects.select_related("project", "api_key").get(pk=worker.agent.pk)
    with django_assert_num_queries(1):
        agent = agent_for_key(expected.api_key)
        project = agent.project
    fields = [field.attname for field in Agent._meta.concrete_fields]
    assert [getattr(agent, name) for name in fields] == [getattr(expected, name) for name in fields]
    assert project == expected.project and project.slug == expected.project.slug
    assert agent.last_heartbeat_at.tzinfo is not None
    assert agent_for_key(None) is None


def test_a_completion_stores_the_result_finishes_the_attempt_and_answers_the_task(make_agent, orchestra):
    from agents.models import TaskAttempt

    worker = make_agent(orchestra=orchestra)
    unsubmitted = TaskFactory(orchestra=orchestra, submitter=None)
    [claimed] = claim(worker)
    stale = worker.api.post(f"/api/v1/tasks/{unsubmitted.pk}/complete/", {"result": 1, "attempt": 2})
    assert stale.status_code == 409
    assert TaskAttempt.objects.get(task=unsubmitted).outcome == "running"  # a refused entry changes nothing
    r = worker.api.post(f"/api/v1/tasks/{unsubmitted.pk}/complete/", {"result": None, "attempt": claimed["attempt"]})
    assert r.status_code == 200
    assert (r.json()["status"], r.json()["submitter"], r.json()["project"]) == ("succeeded", None, "default")
    assert Task.objects.filter(pk=unsubmitted.pk, result__isnull=True, lease_expires_at__isnull=True).exists()
    attempt = TaskAttempt.objects.get(task=unsubmitted)
    assert attempt.outcome == "succeeded" and attempt.finished_at == Task.objects.get(pk=unsubmitted.pk).finished_at


def test_it_completes_once_with_the_result(make_agent, orchestra):
    worker = make_agent(orchestra=orchestra)
    task = TaskFactory(orchestra=orchestra)
    [claimed] = claim(worker)
    r = worker.api.post(f"/api/v1/tasks/{task.pk}/complete/", {"result": {"echo": 1}, "attempt": claimed["attempt"]})
    assert r.status_code == 200
    assert r.json()["status"] == "succeeded"
    assert r.json()["result"] == {"echo": 1}
    again = worker.api.post(
        f"/api/v1/tasks/{task.pk}/complete/", {"result": {"echo": 2}, "attempt": claimed["attempt"]}
    )
    assert again.status_code == 409
    task.refresh_from_db()
    assert task.result == {"echo": 1}
    assert AuditEvent.objects.filter(event_type="task.completed").count() == 1


def test_it_refuses_a_foreign_agent_with_403(make_agent, orchestra):
    holder = make_agent(orchestra=orchestra)
    stranger = make_agent(orchestra=orchestra)
    task = TaskFactory(orchestra=orchestra)
    claim(holder)
    for action, body in (("complete", {"result": 1}), ("fail", {"error": "x"}), ("extend", {})):
        body["attempt"] = 1
        r = stranger.api.post(f"/api/v1/tasks/{task.pk}/{action}/", body)
        assert r.status_code == 403, action
        assert r.json()["error"]["code"] == "not_task_holder"
    task.refresh_from_db()
    assert task.status == "running"
    assert task.agent == holder.agent


def test_it_answers_409_to_a_late_holder_after_the_lease_moved_on(make_agent, orchestra):
    slow = make_agent(orchestra=orchestra)
    fast = make_agent(orchestra=orchestra)
    task = TaskFactory(orchestra=orchestra)
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        [first] = claim(slow)
        traveller.shift(timedelta(seconds=61))
        [second] = claim(fast)  # the claim reaps the expired lease first
        assert second["id"] == task.pk
        assert second["attempt"] == 2
        r = slow.api.post(f"/api/v1/tasks/{task.pk}/complete/", {"result": "late", "attempt": first["attempt"]})
        assert r.status_code == 409
        assert r.json()["error"]["code"] == "lease_lost"
        r = fast.api.post(f"/api/v1/tasks/{task.pk}/complete/", {"result": "on time", "attempt": 2})
        assert r.status_code == 200
    task.refresh_from_db()
    assert (task.status, task.result, task.attempts) == ("succeeded", "on time", 2)
    assert AuditEvent.objects.filter(event_type="task.expired", resource_id=str(task.pk)).count() == 1


def test_it_refuses_a_stale_attempt_from_the_same_agent(make_agent, orchestra):
    worker = make_agent(orchestra=orchestra)
    task = TaskFactory(orchestra=orchestra)
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        claim(worker)
        traveller.shift(timedelta(seconds=61))
        [again] = claim(worker)
        assert again["attempt"] == 2
        r = worker.api.post(f"/api/v1/tasks/{task.pk}/complete/", {"result": "old", "attempt": 1})
        assert r.status_code == 409


def test_it_extends_the_lease_of_the_holder(make_agent, orchestra):
    worker = make_agent(orchestra=orchestra)
    task = TaskFactory(orchestra=orchestra)
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        claim(worker)
        traveller.shift(timedelta(seconds=50))
        r = worker.api.post(f"/api/v1/tasks/{task.pk}/extend/", {"lease_seconds": 30, "attempt": 1})
        assert r.status_code == 200
        traveller.shift(timedelta(seconds=25))  # past the first lease, inside the extended one
        call_command("reap_tasks")
        task.refresh_from_db()
        assert task.status == "running"
        traveller.shift(timedelta(seconds=10))
        call_command("reap_tasks")
        task.refresh_from_db()
        assert task.status == "pending"
        assert task.attempts == 1


def test_it_fails_after_max_attempts_of_expired_leases(make_agent, orchestra):
    worker = make_agent(orchestra=orchestra)
    task = TaskFactory(orchestra=orchestra, max_attempts=2)
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        for _ in range(2):
            assert len(claim(worker)) == 1
            traveller.shift(timedelta(seconds=61))
        assert claim(worker) == []
    task.refresh_from_db()
    assert task.status == "failed"
    assert task.attempts == 2
    assert "lease expired" in task.error


def test_it_requeues_a_retryable_failure_until_attempts_run_out(make_agent, orchestra):
    worker = make_agent(orchestra=orchestra)
    task = TaskFactory(orchestra=orchestra, max_attempts=2)
    claim(worker)
    r = worker.api.post(f"/api/v1/tasks/{task.pk}/fail/", {"error": "rate limited", "retryable": True, "attempt": 1})
    assert r.json()["status"] == "pending"
    assert r.json()["agent"] is None
    claim(worker)
    body = {"error": "rate limited again", "retryable": True, "attempt": 2}
    r = worker.api.post(f"/api/v1/tasks/{task.pk}/fail/", body)
    assert r.json()["status"] == "failed"
    assert r.json()["error"] == "rate limited again"
    assert claim(worker) == []


def test_it_fails_at_once_on_a_non_retryable_failure(make_agent, orchestra):
    worker = make_agent(orchestra=orchestra)
    task = TaskFactory(orchestra=orchestra)
    claim(worker)
    r = worker.api.post(f"/api/v1/tasks/{task.pk}/fail/", {"error": "bad input", "attempt": 1})
    assert r.status_code == 200
    assert (r.json()["status"], r.json()["attempts"]) == ("failed", 1)
    assert AuditEvent.objects.get(event_type="task.failed").details["requeued"] is False


def test_it_rejects_an_oversize_result_and_keeps_the_lease(make_agent, orchestra, settings):
    settings.SYMPHONY_TASK_MAX_RESULT_BYTES = 100
    worker = make_agent(orchestra=orchestra)
    task = TaskFactory(orchestra=orchestra)
    claim(worker)
    r = worker.api.post(f"/api/v1/tasks/{task.pk}/complete/", {"result": "y" * 200, "attempt": 1})
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "result_too_large"
    task.refresh_from_db()
    assert task.status == "running"


def test_it_rejects_a_claim_of_too_many_tasks(make_agent, settings):
    settings.SYMPHONY_TASK_MAX_CLAIM = 5
    r = make_agent().api.post("/api/v1/agent/claim/", {"max_tasks": 6})
    assert r.status_code == 400
    assert "max_tasks" in r.json()["error"]["details"]


def test_it_reaps_expired_leases_from_the_command(make_agent, orchestra, capsys):
    worker = make_agent(orchestra=orchestra)
    TaskFactory(orchestra=orchestra)
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        claim(worker)
        traveller.shift(timedelta(minutes=5))
        call_command("reap_tasks")
    assert "Reaped 1 expired lease" in capsys.readouterr().out
    assert Task.objects.get().status == "pending"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/tasks/99999999999999999999999/complete/", {"result": 1}),
        ("/api/v1/tasks/99999999999999999999999/extend/", {}),
        ("/api/v1/tasks/1/complete/", {"attempt": 10**30}),
        ("/api/v1/agent/claim/", {"lease_seconds": 10**30}),
    ],
)
def test_it_answers_huge_numbers_with_a_4xx(make_agent, path, body):
    r = make_agent().api.post(path, body)
    assert 400 <= r.status_code < 500
    assert "error" in r.json()


def test_it_claims_and_completes_a_task_in_a_fixed_number_of_queries(
    make_agent, orchestra, django_assert_num_queries, django_capture_on_commit_callbacks
):
    """Issue 7: the per-task cost of the agent loop, audit seals included (on PostgreSQL the captured
    on-commit callbacks run inside the count, and only wake the background sealer)."""
    from django.db import connection

    import audit

    worker = make_agent(orchestra=orchestra)
    TaskFactory.create_batch(2, orchestra=orchestra)
    with django_capture_on_commit_callbacks(execute=True):
        claim(worker)  # warms the key cache and starts the chain (an empty one costs one more query)
    # Seal: SQLite seals inside the transaction (the chain's head with the pending events, the
    # update); PostgreSQL in the background, in batches, on the sealer's own connection: none here.
    seal = 2 if connection.vendor == "sqlite" else 0
    savepoint = 2  # the service's transaction, inside the test's
    # the agent, the reap check, the locking select (spent budgets and full concurrency keys are its
    # subqueries), the update, the attempt, the event. On PostgreSQL the reap check is a column of
    # the locking select, the attempt is inserted by the update's statement, and the live streams'
    # pg_notify goes with the COMMIT (symphony.db.postgresql).
    claiming = 4 if connection.vendor == "postgresql" else 6
    with (
        django_assert_num_queries(claiming + savepoint + seal),
        django_capture_on_commit_callbacks(execute=True),
    ):
        (task,) = claim(worker)
    # the agent, the update, the attempt, the task read back (on PostgreSQL these three are one
    # statement), the event, the webhooks outbox lookup
    completion = 4 if connection.vendor == "postgresql" else 6
    with (
        django_assert_num_queries(completion + savepoint + seal),
        django_capture_on_commit_callbacks(execute=True),
    ):
        r = worker.api.post(f"/api/v1/tasks/{task['id']}/complete/", {"result": {"ok": True}, "attempt": 1})
    assert r.status_code == 200
    audit.seal_now()
    assert AuditEvent.objects.filter(chain_seq__isnull=True).count() == 0


@pytest.mark.parametrize(("action", "body"), [("extend", {}), ("complete", {"result": 1}), ("fail", {"error": "x"})])
def test_it_requires_the_attempt_on_lease_calls(make_agent, orchestra, action, body):
    """Issue 10: without the lease token, a stale process sharing the agent's key could report for a
    newer attempt."""
    worker = make_agent(orchestra=orchestra)
    task = TaskFactory(orchestra=orchestra)
    claim(worker)
    r = worker.api.post(f"/api/v1/tasks/{task.pk}/{action}/", body)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "validation_error"
    assert list(r.json()["error"]["details"]) == ["attempt"]
    task.refresh_from_db()
    assert (task.status, task.result, task.error) == ("running", None, "")


def test_it_never_reuses_an_attempt_number_after_a_retry(make_agent, operator_api, orchestra):
    """Issue 10: task_retry reset the counter, so the retried task's first claim was attempt 1 again
    and a stale process still holding attempt 1 (same agent key) overwrote the new result."""
    stale, fresh = make_agent(orchestra=orchestra), None
    task = TaskFactory(orchestra=orchestra, max_attempts=1)
    [first] = claim(stale)
    assert first["attempt"] == 1
    # The first process stalls; its attempt is cancelled and the task retried.
    assert operator_api.post(f"/api/v1/tasks/{task.pk}/cancel/").status_code == 200
    retried = operator_api.post(f"/api/v1/tasks/{task.pk}/retry/")
    assert retried.status_code == 200
    assert retried.json()["attempts"] == 0  # a fresh budget...
    fresh = stale  # ...and a second process of the same agent, with the same key, claims it again
    [second] = claim(fresh)
    assert second["attempt"] == 2  # ...but never the same lease token

    late = stale.api.post(f"/api/v1/tasks/{task.pk}/complete/", {"result": "stale", "attempt": first["attempt"]})
    assert late.status_code == 409
    assert late.json()["error"]["code"] == "lease_lost"
    for action, body in (("extend", {}), ("fail", {"error": "stale"})):
        r = stale.api.post(f"/api/v1/tasks/{task.pk}/{action}/", {**body, "attempt": first["attempt"]})
        assert r.status_code == 409, action
    done = fresh.api.post(f"/api/v1/tasks/{task.pk}/complete/", {"result": "new", "attempt": second["attempt"]})
    assert done.status_code == 200
    task.refresh_from_db()
    assert (task.status, task.result, task.attempts, task.last_attempt) == ("succeeded", "new", 1, 2)
    assert list(task.attempt_set.values_list("number", "outcome")) == [(1, "cancelled"), (2, "succeeded")]
