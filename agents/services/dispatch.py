"""The agent protocol: claim, extend, complete, fail, and reaping expired leases.

Conditional UPDATEs (``filter(status=...).update(...)``) rather than read-check-write, so a claim, a cancel
and a lease expiry racing on one task cannot both win. Claims lock candidate rows with
``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite runs every write transaction with
``BEGIN IMMEDIATE`` (settings), which serialises claimers instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connection, transaction
from django.db.models import BigIntegerField, Case, DateTimeField, F, JSONField, Q, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.serializers import as_serializer_error

import audit
from agents import hooks, metrics
from agents.exceptions import (
    LeaseLost,
    NotTaskHolder,
    TaskCancelled,
)
from agents.models import Agent, Task, TaskAttempt
from agents.services import flow
from agents.services.notify import (
    pending_notify,
    slot_freed_notify,
    task_notify,
    task_pending_notify,
    tasks_notify,
)
from agents.services.tasks import check_json_size
from agents.services.usage import SPENT_NOW_SQL, current_period_params, usage_record
from audit import hooks as domain_events
from symphony.db.rows import Columns

log = structlog.get_logger(__name__)


def lease_seconds_or_default(lease_seconds: int | None) -> int:
    if lease_seconds is None:
        return settings.SYMPHONY_TASK_LEASE_SECONDS
    return max(1, min(int(lease_seconds), settings.SYMPHONY_TASK_MAX_LEASE_SECONDS))


def task_claim(*, agent: Agent, max_tasks: int = 1, lease_seconds: int | None = None) -> list[Task]:
    """Lease up to ``max_tasks`` pending tasks to ``agent``: highest priority first, then oldest.

    Expired leases are reaped first. Each claimed task is one more attempt (counted against
    ``max_attempts``), gets the next attempt number (``last_attempt``, the holder's lease token, never
    reused) and one ``task.claimed`` event. Never hands one task to two agents: PostgreSQL locks the candidates with
    ``FOR UPDATE SKIP LOCKED`` (concurrent claimers take different rows); SQLite serialises the whole
    claim transaction (``BEGIN IMMEDIATE``).
    """
    max_tasks = max(1, min(max_tasks, settings.SYMPHONY_TASK_MAX_CLAIM))
    lease = lease_seconds_or_default(lease_seconds)
    if connection.vendor != "postgresql" and _any_expired_lease():
        task_reap_expired()
    claimed = _claim(agent=agent, max_tasks=max_tasks, lease=lease)
    if claimed is None:  # expired leases first, in a transaction of their own, then the claim
        task_reap_expired()
        claimed = _claim(agent=agent, max_tasks=max_tasks, lease=lease, reaped=True)
    return claimed or []


#: ``Task.objects.expired_leases().exists()``, written once: every claim asks it first.
_ANY_EXPIRED_SQL = f"SELECT 1 FROM {Task._meta.db_table} WHERE status = %s AND lease_expires_at < %s LIMIT 1"  # noqa: S608 (model names only)


def _any_expired_lease() -> bool:
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(_ANY_EXPIRED_SQL, [Task.Status.RUNNING, now])
        return cursor.fetchone() is not None


def _expired_leases_first(candidates: list[Task]) -> bool:
    """Whether a PostgreSQL claim must reap expired leases before taking ``candidates`` (a task
    returned to the queue may come first). The locking read answers it in its ``expired_leases``
    column, so a claim that finds work spends no statement on the question; one that finds none asks."""
    if connection.vendor != "postgresql":
        return False  # asked before the claim's transaction (``task_claim``)
    return candidates[0].expired_leases if candidates else _any_expired_lease()


@transaction.atomic
def _claim(*, agent: Agent, max_tasks: int, lease: int, reaped: bool = False) -> list[Task] | None:
    """The claim's transaction; on PostgreSQL ``None`` when expired leases should be reaped first
    (the caller reaps and calls again with ``reaped``), having changed nothing."""
    now = timezone.now()
    # Whole rows, not just ids: they are locked (PostgreSQL) or under the write lock (SQLite) until we
    # commit, so they are still pending when updated and the UPDATE's changes can be applied to these
    # copies rather than read back with one more query.
    candidates = _lock_candidates(agent, max_tasks, now)
    if not reaped and _expired_leases_first(candidates):
        return None
    tasks = flow.claim_within_limits(candidates)
    if not tasks:
        return []
    ids = [task.pk for task in tasks]
    expires = now + timedelta(seconds=lease)
    updated = _lease(ids, agent=agent, now=now, expires=expires)
    if updated == len(tasks):
        for task in tasks:
            task.status, task.agent, task.attempts = Task.Status.RUNNING, agent, task.attempts + 1
            task.last_attempt += 1
            task.lease_expires_at, task.claimed_at, task.updated_at = expires, now, now
            task.started_at = task.started_at or now
    else:  # not expected under the lock; if it ever happens, trust the database, not the copies
        tasks = list(
            Task.objects.filter(pk__in=ids, status=Task.Status.RUNNING, agent=agent).order_by(
                "-priority", "fair_seq", "created_at", "id"
            )
        )
    if connection.vendor != "postgresql":  # PostgreSQL's ``_lease`` inserted them
        TaskAttempt.objects.bulk_create(
            [TaskAttempt(task=task, number=task.last_attempt, agent=agent, claimed_at=now) for task in tasks]
        )
    waits = []
    for task in tasks:
        task.project = agent.project  # the claim never crosses projects (claimable)
        if task.last_attempt == 1:
            waits.append((now - task.created_at).total_seconds())
    audit.record_many(  # one INSERT for the claim's events, not one per task
        "task.claimed",
        [
            {"resource": task, "details": {"agent": agent.name, "attempt": task.last_attempt, "lease_seconds": lease}}
            for task in tasks
        ],
    )
    tasks_notify(task_ids=[task.pk for task in tasks])
    hooks.run_claim_enrichers(tasks)
    transaction.on_commit(lambda: _observe_claims(len(tasks), waits))
    log.info("tasks_claimed", agent=agent.name, task_ids=[t.pk for t in tasks])
    return tasks


#: ``_lease`` on PostgreSQL, written once: the update of the locked candidates and the insert of
#: their attempts (numbered by the update) in one statement instead of two querysets.
_LEASE_SQL = f"""
WITH claimed AS (
    UPDATE {Task._meta.db_table} t SET status = %(running)s, agent_id = %(agent)s, attempts = t.attempts + 1,
        last_attempt = t.last_attempt + 1, lease_expires_at = %(expires)s, claimed_at = %(now)s,
        started_at = COALESCE(t.started_at, %(now)s), updated_at = %(now)s
    WHERE t.id = ANY(%(ids)s) AND t.status = %(pending)s
    RETURNING t.id, t.last_attempt
)
INSERT INTO {TaskAttempt._meta.db_table} (task_id, number, agent_id, claimed_at, finished_at, outcome)
SELECT claimed.id, claimed.last_attempt, %(agent)s, %(now)s, NULL, %(attempt_running)s FROM claimed
"""  # noqa: S608 (names from the models; every value is bound)


def _lease(ids: list[int], *, agent: Agent, now: datetime, expires: datetime) -> int:
    """Lease the pending tasks ``ids`` to ``agent`` until ``expires``, one attempt more each; how many
    were. On PostgreSQL their ``TaskAttempt`` rows are inserted by the same statement."""
    if connection.vendor != "postgresql":
        return Task.objects.filter(pk__in=ids, status=Task.Status.PENDING).update(
            status=Task.Status.RUNNING,
            agent=agent,
            attempts=F("attempts") + 1,
            last_attempt=F("last_attempt") + 1,
            lease_expires_at=expires,
            claimed_at=now,
            started_at=Coalesce("started_at", Value(now)),
            updated_at=now,
        )
    params = {"ids": ids, "agent": agent.pk, "now": now, "expires": expires, "running": Task.Status.RUNNING,
              "pending": Task.Status.PENDING, "attempt_running": TaskAttempt.Outcome.RUNNING}  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(_LEASE_SQL, params)
        return cursor.rowcount


def claim_candidates_queryset(agent: Agent) -> Any:
    """What an agent may claim next, in claim order: the definition ``_lock_candidates`` runs."""
    return flow.claim_candidates(Task.objects.claimable(agent), project_id=agent.project_id)


#: ``claim_candidates_queryset`` with ``FOR UPDATE SKIP LOCKED``, as PostgreSQL SQL written once. The
#: ORM builds and compiles that queryset (four subqueries) in several milliseconds of CPU on every
#: claim, more than the statement takes to run; this is the same statement with its values bound.
#: ``agents/tests/test_claim_sql.py`` checks that both pick the same tasks in the same order. Each row
#: also says whether any lease has expired (``expired_leases``, see ``_expired_leases_first``).
_CANDIDATES_SQL = f"""
SELECT t.*, EXISTS (SELECT 1 FROM agents_task x WHERE x.status = 'running' AND x.lease_expires_at < %(now)s)
    AS expired_leases
FROM agents_task t
WHERE t.status = 'pending' AND t.project_id = %(project)s
  AND ((t.target_agent_id IS NULL AND t.orchestra_id IN (
          SELECT o.id FROM agents_orchestra o JOIN agents_orchestra_agents m ON m.orchestra_id = o.id
          WHERE o.state = 'running' AND m.agent_id = %(agent)s))
       OR t.target_agent_id = %(agent)s)
  AND t.required_capabilities <@ %(capabilities)s::jsonb
  AND NOT EXISTS (
      SELECT 1 FROM agents_budget b
      WHERE b.project_id = %(project)s AND b.orchestra_id IS NULL
        AND {SPENT_NOW_SQL})
  AND NOT (t.orchestra_id IS NOT NULL AND t.orchestra_id IN (
      SELECT b.orchestra_id FROM agents_budget b
      WHERE b.project_id = %(project)s AND b.orchestra_id IS NOT NULL
        AND {SPENT_NOW_SQL}))
  AND t.concurrency_key NOT IN (
      SELECT c.key FROM agents_concurrencylimit c
      WHERE c.project_id = %(project)s AND c.max_running <= (
          SELECT count(*) FROM agents_task r
          WHERE r.project_id = %(project)s AND r.status = 'running' AND r.concurrency_key = c.key))
ORDER BY t.priority DESC, t.fair_seq ASC, t.created_at ASC, t.id ASC
LIMIT %(limit)s
FOR UPDATE OF t SKIP LOCKED
"""  # noqa: S608 (the fragment is usage.SPENT_NOW_SQL; every value is bound)


def _lock_candidates(agent: Agent, max_tasks: int, now: datetime) -> list[Task]:
    """Up to ``max_tasks`` claimable tasks of ``agent``, locked (PostgreSQL: ``SKIP LOCKED``; SQLite:
    the whole claim holds the write lock)."""
    if connection.vendor != "postgresql":
        return list(claim_candidates_queryset(agent)[:max_tasks])
    params = {
        "project": agent.project_id,
        "agent": agent.pk,
        "capabilities": json.dumps(list(agent.capabilities or [])),
        **current_period_params(now),
        "limit": max_tasks,
        "now": now,
    }
    return list(Task.objects.raw(_CANDIDATES_SQL, params))


def _observe_claims(count: int, waits: list[float]) -> None:
    metrics.TASKS_CLAIMED.inc(count)
    for wait in waits:
        metrics.TASK_QUEUE_WAIT.observe(max(wait, 0.0))


def _holder_filter(*, task_id: int, agent: Agent, attempt: int) -> Any:
    """The task row, if (and only if) ``agent`` holds its current lease under attempt number ``attempt``.

    The agent alone is not enough: several processes may share one agent key, and one that stalled
    past its lease must not report over the attempt its task was claimed again for.
    """
    return Task.objects.filter(pk=task_id, status=Task.Status.RUNNING, agent=agent, last_attempt=attempt)


def _lease_error(*, task_id: int, agent: Agent) -> Exception:
    """Explain why ``agent`` does not hold ``task_id``: 404 unknown (or of another project: the agent
    may not know it exists), 409 it held it once, 403 it never did."""
    from rest_framework.exceptions import NotFound

    task = Task.objects.filter(pk=task_id, project_id=agent.project_id).first()
    if task is None:
        return NotFound("No such task.")
    if task.agent_id == agent.pk or TaskAttempt.objects.filter(task_id=task_id, agent=agent).exists():
        if task.status == Task.Status.CANCELLED:
            return TaskCancelled()
        if task.status == Task.Status.RUNNING and task.agent_id == agent.pk:
            return LeaseLost(f"This attempt is over: the task is on attempt {task.last_attempt}.")
        return LeaseLost(f"The lease moved on: the task is now {task.status}.")
    return NotTaskHolder()


@transaction.atomic
def task_extend(*, task_id: int, agent: Agent, attempt: int, lease_seconds: int | None = None) -> Task:
    """Push the holder's lease to now + ``lease_seconds`` (default lease, bounded by the maximum).

    A lease that expired but was not yet reaped can still be extended: nobody else holds the task.
    Raises ``LeaseLost`` (409) or ``NotTaskHolder`` (403).
    """
    now = timezone.now()
    expires = now + timedelta(seconds=lease_seconds_or_default(lease_seconds))
    if not _holder_filter(task_id=task_id, agent=agent, attempt=attempt).update(
        lease_expires_at=expires, updated_at=now
    ):
        raise _lease_error(task_id=task_id, agent=agent)
    return Task.objects.get(pk=task_id)


def _finish_attempt(*, task_id: int, attempt: int, outcome: str, now: datetime) -> None:
    TaskAttempt.objects.filter(task_id=task_id, number=attempt, outcome=TaskAttempt.Outcome.RUNNING).update(
        outcome=outcome, finished_at=now
    )


@transaction.atomic
def task_complete(
    *,
    task_id: int,
    agent: Agent,
    attempt: int,
    result: Any = None,
    wait_for_children: bool = False,
    usage: list[dict[str, Any]] | None = None,
) -> Task:
    """Record the holder's result and its LLM ``usage``; the task succeeds (or, with
    ``wait_for_children`` and unfinished children, waits for them: see ``children.parent_complete``).
    Transitions that follow (workflow steps unblocked, a waiting parent finished) happen in this same
    transaction. Raises ``PayloadTooLarge`` (413, naming result), ``LeaseLost`` (409) or
    ``NotTaskHolder`` (403)."""
    check_json_size("result", result, settings.SYMPHONY_TASK_MAX_RESULT_BYTES)
    now = timezone.now()
    task = _succeed_held(task_id=task_id, agent=agent, attempt=attempt, result=result, now=now)
    if task is None:
        raise _lease_error(task_id=task_id, agent=agent)
    audit.record("task.completed", resource=task, details={"agent": agent.name, "attempt": attempt})
    task_notify(task_id=task_id)
    slot_freed_notify(task)
    usage_record(task=task, agent=agent, items=usage or [], source="completion")
    if wait_for_children:
        from agents.services.children import parent_complete

        parent_complete(task=task, now=now)
    if task.status == Task.Status.SUCCEEDED:
        _task_succeeded(task)
    _observe_success(task, now)
    return task


def _succeed_held(*, task_id: int, agent: Agent, attempt: int, result: Any, now: datetime) -> Task | None:
    """The task succeeded with ``result`` and its attempt finished, if ``agent`` holds it under
    ``attempt`` (``_holder_filter``); the task as now stored (submitter and project loaded), else None."""
    if connection.vendor != "postgresql":
        if not _holder_filter(task_id=task_id, agent=agent, attempt=attempt).update(**_succeeded(now), result=result):
            return None
        _finish_attempt(task_id=task_id, attempt=attempt, outcome=TaskAttempt.Outcome.SUCCEEDED, now=now)
        return Task.objects.select_related("submitter", "project").get(pk=task_id)
    params = _succeed_params(agent=agent, now=now) | {
        "set_result": Task._meta.get_field("result").get_db_prep_save(result, connection),
        "task": task_id,
        "attempt": attempt,
    }
    with connection.cursor() as cursor:
        cursor.execute(_SUCCEED_HELD_SQL, params)
        row = cursor.fetchone()
    return None if row is None else _succeeded_task(row, agent)


def _succeed_params(*, agent: Agent, now: datetime) -> dict[str, Any]:
    """The parameters the succeed statements share: ``_succeeded``'s columns (``set_*``) and the fence."""
    params = {f"set_{name}": Task._meta.get_field(name).get_db_prep_save(value, connection)
              for name, value in _succeeded(now).items()}  # fmt: skip
    return params | {"agent": agent.pk, "now": now, "running": Task.Status.RUNNING,
                     "attempt_running": TaskAttempt.Outcome.RUNNING,
                     "attempt_succeeded": TaskAttempt.Outcome.SUCCEEDED}  # fmt: skip


def _succeeded_task(row: Any, agent: Agent) -> Task:
    """A row of a succeed statement (the task's columns, then the submitter's) as a Task, its submitter
    and (the agent's, as claimed: a claim never crosses projects) project loaded."""
    task, submitter = _TASK.split(row, _SUBMITTER, connection=connection)
    Task.submitter.field.set_cached_value(task, submitter if submitter.pk is not None else None)
    if task.project_id == agent.project_id:
        Task.project.field.set_cached_value(task, agent.project)
    return task


@dataclass
class CompletionOutcome:
    """One entry of ``task_complete_batch``: the task (completed) or the error that refused it."""

    task_id: int
    attempt: int
    task: Task | None = None
    error: APIException | None = None


@transaction.atomic
def task_complete_batch(*, agent: Agent, results: list[dict[str, Any]]) -> list[CompletionOutcome]:
    """``task_complete`` for each entry of ``results`` (``task``, ``attempt``, ``result``, ...), in order.

    Each entry is fenced by its own attempt and answered on its own: a refused one (stale attempt,
    another agent's task, oversize result: an ``APIException``; a Django ``ValidationError`` is
    reported as DRF's) is rolled back to its savepoint and reported, and the others still complete.
    All of it is one transaction, so the audit chain is sealed once for the batch. Anything else (a
    database error) raises and completes nothing.

    Plain entries (no ``usage``, no ``wait_for_children``) of tasks the agent holds under their
    attempt, outside workflows and parents, are completed set-wise: one locking read, one UPDATE of
    the tasks, one of their attempts, one read back, one INSERT of their events, whatever the batch's
    size (``_complete_held``). Every other entry, refused ones included, goes through
    ``task_complete`` on its own, which also explains a refusal.
    """
    outcomes = [CompletionOutcome(task_id=entry["task"], attempt=entry["attempt"]) for entry in results]
    with domain_events.batched():
        plain = {}
        for index, entry in enumerate(results):
            if entry.get("usage") or entry.get("wait_for_children") or entry["task"] in plain:
                continue
            try:
                check_json_size("result", entry.get("result"), settings.SYMPHONY_TASK_MAX_RESULT_BYTES)
            except APIException as exc:
                outcomes[index].error = exc
                continue
            plain[entry["task"]] = index
        done = _complete_held(agent=agent, entries={task_id: results[i] for task_id, i in plain.items()})
        for task_id, task in done.items():
            outcomes[plain[task_id]].task = task
        for index, entry in enumerate(results):
            outcome = outcomes[index]
            if outcome.task is not None or outcome.error is not None:
                continue
            fields = {key: value for key, value in entry.items() if key != "task"}
            try:
                outcome.task = task_complete(task_id=entry["task"], agent=agent, **fields)  # its own savepoint
            except APIException as exc:
                outcome.error = exc
            except DjangoValidationError as exc:
                outcome.error = ValidationError(as_serializer_error(exc))
    return outcomes


def _complete_held(*, agent: Agent, entries: dict[int, dict[str, Any]]) -> dict[int, Task]:
    """Complete, set-wise, those of ``entries`` (task id: entry) that ``agent`` holds under the entry's
    attempt and that no workflow or parent waits on; return them by id, in the entries' order. The
    others are left alone (not changed) for ``task_complete`` to complete or refuse one by one."""
    if not entries:
        return {}
    now = timezone.now()
    done = _succeed_held_many(agent=agent, entries=entries, now=now)
    tasks = {pk: done[pk] for pk in entries if pk in done}
    if not tasks:
        return {}
    audit.record_many(
        "task.completed",
        [{"resource": task, "details": {"agent": agent.name, "attempt": entries[pk]["attempt"]}}
         for pk, task in tasks.items()],
    )  # fmt: skip
    tasks_notify(task_ids=list(tasks))
    for task in tasks.values():
        slot_freed_notify(task)
        _task_succeeded(task)
        _observe_success(task, now)
    return tasks


def _succeed_held_many(*, agent: Agent, entries: dict[int, dict[str, Any]], now: datetime) -> dict[int, Task]:
    """``_succeed_held`` for each of ``entries`` that ``agent`` holds under its attempt, outside any
    workflow or parent; the tasks as now stored (submitter and project loaded), by id."""
    if connection.vendor == "postgresql":
        # One JSON document, not a typed array per column: psycopg would quote each result's JSON
        # text again as an array element, in Python (ten times the CPU of json.dumps). A null result
        # is read as SQL NULL, as ``update(result=None)`` stores it, not JSON null.
        document = [{"id": pk, "attempt": e["attempt"], "result": e.get("result")} for pk, e in entries.items()]
        params = _succeed_params(agent=agent, now=now) | {"entries": json.dumps(document)}
        with connection.cursor() as cursor:
            cursor.execute(_SUCCEED_HELD_MANY_SQL, params)
            tasks = [_succeeded_task(row, agent) for row in cursor.fetchall()]
        return {task.pk: task for task in tasks}
    held = Task.objects.filter(pk__in=list(entries), status=Task.Status.RUNNING, agent=agent)
    if connection.features.has_select_for_update_skip_locked:
        held = held.select_for_update(of=("self",))  # until commit: nobody moves the lease meanwhile
    rows = held.values_list("id", "last_attempt", "workflow", "parent_id")
    ids = [pk for pk, attempt, workflow, parent in rows
           if attempt == entries[pk]["attempt"] and workflow is None and parent is None]  # fmt: skip
    if not ids:
        return {}
    results = Case(*(When(pk=pk, then=_json(entries[pk].get("result"))) for pk in ids), output_field=JSONField())
    updated = Task.objects.filter(pk__in=ids, status=Task.Status.RUNNING, agent=agent).update(
        **_succeeded(now), result=results
    )
    if updated != len(ids):  # not expected under the lock: let each entry be answered on its own
        raise RuntimeError("held tasks changed under their row locks")
    attempts = Q()
    for pk in ids:
        attempts |= Q(task_id=pk, number=entries[pk]["attempt"])
    TaskAttempt.objects.filter(attempts, outcome=TaskAttempt.Outcome.RUNNING).update(
        outcome=TaskAttempt.Outcome.SUCCEEDED, finished_at=now
    )
    return {task.pk: task for task in Task.objects.select_related("submitter", "project").filter(pk__in=ids)}


def _json(value: Any) -> Value | None:
    return None if value is None else Value(value, output_field=JSONField())


def _succeeded(now: datetime) -> dict[str, Any]:
    """The columns a completion sets, but the result."""
    return {
        "status": Task.Status.SUCCEEDED,
        "error": "",
        "lease_expires_at": None,
        "finished_at": now,
        "updated_at": now,
    }


_TASK, _SUBMITTER = Columns(Task, "t"), Columns(get_user_model(), "u", fields=["id", "username"])
_SUCCEED_SET = ", ".join(
    f'"{Task._meta.get_field(name).column}" = %(set_{name})s' for name in [*_succeeded(timezone.now()), "result"]
)

#: ``_succeed_held`` on PostgreSQL, written once: the fenced update, the attempt's and the read back
#: (submitter included) in one statement instead of three querysets. The columns set are
#: ``_succeeded``'s and the result.
_SUCCEED_HELD_SQL = f"""
WITH done AS (
    UPDATE {Task._meta.db_table} t SET {_SUCCEED_SET}
    WHERE t.id = %(task)s AND t.status = %(running)s AND t.agent_id = %(agent)s AND t.last_attempt = %(attempt)s
    RETURNING {_TASK.sql}
), finished AS (
    UPDATE {TaskAttempt._meta.db_table} a SET outcome = %(attempt_succeeded)s, finished_at = %(now)s
    FROM done WHERE a.task_id = done.id AND a.number = %(attempt)s AND a.outcome = %(attempt_running)s
)
SELECT done.*, {_SUBMITTER.sql} FROM done LEFT JOIN {get_user_model()._meta.db_table} u ON u.id = done.submitter_id
"""  # noqa: S608 (names from the models; every value is bound)


#: ``_succeed_held_many`` on PostgreSQL, written once: every entry's fenced update (the row lock the
#: UPDATE takes re-checks the fence against a concurrent change), their attempts' and the read back, in
#: one statement instead of a locking read and three querysets.
_SUCCEED_HELD_MANY_SQL = f"""
WITH entry AS (
    SELECT * FROM json_to_recordset(%(entries)s::json) AS e(id bigint, attempt integer, result jsonb)
), done AS (
    UPDATE {Task._meta.db_table} t SET {_SUCCEED_SET.replace("%(set_result)s", "entry.result")}
    FROM entry
    WHERE t.id = entry.id AND t.status = %(running)s AND t.agent_id = %(agent)s AND t.last_attempt = entry.attempt
      AND t.workflow IS NULL AND t.parent_id IS NULL
    RETURNING {_TASK.sql}
), finished AS (
    UPDATE {TaskAttempt._meta.db_table} a SET outcome = %(attempt_succeeded)s, finished_at = %(now)s
    FROM done WHERE a.task_id = done.id AND a.number = done.last_attempt AND a.outcome = %(attempt_running)s
)
SELECT done.*, {_SUBMITTER.sql} FROM done LEFT JOIN {get_user_model()._meta.db_table} u ON u.id = done.submitter_id
"""  # noqa: S608 (names from the models; every value is bound)


def _task_succeeded(task: Task) -> None:
    """What follows a task's success in its transaction: the hooks and its domain event."""
    hooks.run_task_finished(task)
    _emit_task_finished(task, "task.succeeded")


def _observe_success(task: Task, now: datetime) -> None:
    duration = (now - task.claimed_at).total_seconds() if task.claimed_at else None
    transaction.on_commit(lambda: metrics.observe_outcome("succeeded", duration))


@transaction.atomic
def task_fail(
    *,
    task_id: int,
    agent: Agent,
    attempt: int,
    error: str,
    retryable: bool = False,
    usage: list[dict[str, Any]] | None = None,
) -> Task:
    """Record the holder's failure. A retryable failure with attempts left goes back to pending;
    otherwise the task fails. Raises ``LeaseLost`` (409) or ``NotTaskHolder`` (403)."""
    now = timezone.now()
    changes: dict[str, Any] = {"status": Task.Status.FAILED, "finished_at": now}
    if retryable:
        # Decided in the UPDATE itself, so the attempts read is the attempts written.
        can_retry = Q(attempts__lt=F("max_attempts"))
        changes = {
            "status": Case(When(can_retry, then=Value(Task.Status.PENDING)), default=Value(Task.Status.FAILED)),
            "agent": Case(When(can_retry, then=Value(None)), default=F("agent"), output_field=BigIntegerField()),
            "finished_at": Case(When(can_retry, then=Value(None)), default=Value(now), output_field=DateTimeField()),
        }
    updated = _holder_filter(task_id=task_id, agent=agent, attempt=attempt).update(
        **changes, error=error[:10000], lease_expires_at=None, updated_at=now
    )
    if not updated:
        raise _lease_error(task_id=task_id, agent=agent)
    _finish_attempt(task_id=task_id, attempt=attempt, outcome=TaskAttempt.Outcome.FAILED, now=now)
    task = Task.objects.select_related("submitter", "project").get(pk=task_id)
    requeued = task.status == Task.Status.PENDING
    audit.record(
        "task.failed",
        resource=task,
        details={"agent": agent.name, "attempt": attempt, "retryable": retryable, "requeued": requeued},
    )
    task_notify(task_id=task_id)
    if requeued:
        task_pending_notify(task)  # a waiting claim may take it at once
    slot_freed_notify(task)
    usage_record(task=task, agent=agent, items=usage or [], source="failure")
    if not requeued:
        hooks.run_task_finished(task)
        _emit_task_finished(task, "task.failed")
    duration = (now - task.claimed_at).total_seconds() if task.claimed_at else None
    transaction.on_commit(lambda: metrics.observe_outcome("requeued" if requeued else "failed", duration))
    return task


def _emit_task_finished(task: Task, event_type: str) -> None:
    """Domain event for listeners above agents (webhooks), in this transaction. The result is left
    out (up to SYMPHONY_TASK_MAX_RESULT_BYTES): subscribers fetch it from the task's URL."""
    domain_events.emit(
        event_type,
        project_id=getattr(task, "project_id", None),
        data={
            "task": {
                "id": task.pk,
                "kind": task.kind,
                "status": task.status,
                "attempt": task.attempts,
                "error": task.error[:1000],
                "finished_at": task.finished_at.isoformat() if task.finished_at else None,
            }
        },
    )


def release_running(*, task_ids: list[int], now: datetime, reason: str) -> tuple[list[int], list[int]]:
    """Return running tasks to pending, or fail those out of attempts; return ``(requeued, failed)``."""
    rows = list(
        Task.objects.filter(pk__in=task_ids, status=Task.Status.RUNNING).values_list("id", "attempts", "max_attempts")
    )
    requeue = [pk for pk, attempts, max_attempts in rows if attempts < max_attempts]
    fail = [pk for pk, attempts, max_attempts in rows if attempts >= max_attempts]
    Task.objects.filter(pk__in=requeue, status=Task.Status.RUNNING).update(
        status=Task.Status.PENDING, agent=None, lease_expires_at=None, updated_at=now
    )
    Task.objects.filter(pk__in=fail, status=Task.Status.RUNNING).update(
        status=Task.Status.FAILED, lease_expires_at=None, finished_at=now, updated_at=now, error=reason[:10000]
    )
    TaskAttempt.objects.filter(task_id__in=requeue + fail, outcome=TaskAttempt.Outcome.RUNNING).update(
        outcome=TaskAttempt.Outcome.EXPIRED, finished_at=now
    )
    return requeue, fail


@transaction.atomic
def task_reap_expired(*, now: datetime | None = None, limit: int = 500) -> int:
    """Expired leases: back to pending (the attempt stays counted) or failed after max attempts.

    Runs before every claim and from ``manage.py reap_tasks``. Rows another reaper is handling are
    skipped (``SKIP LOCKED``). Each reaped task gets a ``task.expired`` event. Returns how many.
    """
    now = now or timezone.now()
    expired = Task.objects.expired_leases(now).order_by("lease_expires_at")
    if connection.features.has_select_for_update_skip_locked:
        expired = expired.select_for_update(skip_locked=True, of=("self",))
    rows = list(expired.values_list("id", "project__slug", "project_id")[:limit])
    projects = {task_id: slug for task_id, slug, _ in rows}
    ids = list(projects)
    if not ids:
        return 0
    requeued, failed = release_running(task_ids=ids, now=now, reason="The lease expired and no attempts are left.")
    for task_id in requeued + failed:
        audit.record(
            "task.expired",
            resource_type="agents.task",
            resource_id=task_id,
            project=projects[task_id],
            details={"requeued": task_id in requeued},
        )
        task_notify(task_id=task_id)
    per_project: dict[int, int] = {}
    for _, _, project_id in rows:
        per_project[project_id] = per_project.get(project_id, 0) + 1
    for project_id, count in sorted(per_project.items()):  # requeued, or a concurrency slot freed
        pending_notify(project_id=project_id, count=count)
    log.warning("task_leases_expired", requeued=requeued, failed=failed)
    for task in Task.objects.filter(pk__in=failed) if failed else ():
        _emit_task_finished(task, "task.failed")
        hooks.run_task_finished(task)

    def observe() -> None:
        for _ in requeued:
            metrics.observe_outcome("expired", None)
        for _ in failed:
            metrics.observe_outcome("failed", None)

    transaction.on_commit(observe)
    return len(requeued) + len(failed)
