"""Task submission and the operator actions on tasks: cancel and retry."""

from __future__ import annotations

import json
from typing import Any

import structlog
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

import audit
from agents import hooks, metrics
from agents.exceptions import (
    OrchestraStateConflict,
    PayloadTooLarge,
    TaskStateConflict,
)
from agents.models import Agent, Orchestra, Task, TaskAttempt, normalize_capabilities
from agents.services import flow
from agents.services.notify import slot_freed_notify, task_notify, task_pending_notify
from agents.services.usage import budget_check

log = structlog.get_logger(__name__)


def json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def check_json_size(field: str, value: Any, limit: int) -> None:
    """Raise ``PayloadTooLarge`` (413, naming ``field``) when ``value`` serialises to more than ``limit`` bytes."""
    size = json_size(value)
    if size > limit:
        raise PayloadTooLarge(field, size, limit)


@transaction.atomic
def task_submit(
    *,
    submitter: Any,
    kind: str,
    input: Any = None,
    orchestra: Orchestra | None = None,
    target_agent: Agent | None = None,
    required_capabilities: list[str] | None = None,
    priority: int = Task.Priority.NORMAL,
    max_attempts: int = 3,
    idempotency_key: str | None = None,
    traceparent: str = "",
    concurrency_key: str = "",
    fairness_key: str = "",
) -> tuple[Task, bool]:
    """Queue a task into ``orchestra`` or for ``target_agent``; return ``(task, created)``.

    With an ``idempotency_key`` already used by the same submitter, the existing task is returned
    and ``created`` is False (nothing else is checked or changed). Raises ``PayloadTooLarge`` for an
    oversize input, ``ValidationError`` naming the field, ``OrchestraStateConflict`` for a stopped
    orchestra.
    """
    if idempotency_key:
        existing = Task.objects.filter(submitter=submitter, idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing, False
    check_json_size("input", input if input is not None else {}, settings.SYMPHONY_TASK_MAX_INPUT_BYTES)
    if orchestra is None and target_agent is None:
        raise ValidationError({"orchestra": ["A task needs an orchestra (or use agents/{id}/execute/)."]})
    if orchestra is not None and target_agent is not None and orchestra.project_id != target_agent.project_id:
        raise ValidationError({"target_agent": ["The agent does not belong to the orchestra's project."]})
    if orchestra is not None and orchestra.state == Orchestra.State.STOPPED:
        raise OrchestraStateConflict(f"Orchestra {orchestra.name} is stopped; start it before submitting tasks.")
    # A task's project is its destination's; never chosen by the submitter.
    destination = orchestra if orchestra is not None else target_agent
    budget_check(project_id=destination.project_id, orchestra=orchestra)
    task = Task(
        project=destination.project,  # usually loaded with the destination; the audit event needs its slug
        kind=kind,
        input=input if input is not None else {},
        orchestra=orchestra,
        target_agent=target_agent,
        required_capabilities=normalize_capabilities(required_capabilities or []),
        priority=priority,
        max_attempts=max_attempts,
        idempotency_key=idempotency_key or "",
        traceparent=traceparent,
        submitter=submitter,
        concurrency_key=concurrency_key or "",
        fairness_key=fairness_key or flow.default_fairness_key(submitter),
    )
    task.fair_seq = flow.fair_seq_next(fairness_key=task.fairness_key, priority=task.priority)
    # The related rows were loaded (the project with its destination), so they exist: only the values
    # are checked, not the foreign keys again (one query each).
    task.full_clean(exclude=["submitter", "orchestra", "target_agent", "agent", "project"], validate_constraints=False)
    if not idempotency_key:
        task.save(force_insert=True)  # no key, no race to lose: no savepoint (two round trips) either
    else:
        try:
            with transaction.atomic():
                task.save(force_insert=True)
        except IntegrityError:
            # Another request with the same idempotency key won the race: answer with its task.
            existing = Task.objects.filter(submitter=submitter, idempotency_key=idempotency_key).first()
            if existing is not None:
                return existing, False
            raise
    audit.record(
        "task.submitted",
        actor=submitter,
        resource=task,
        details={
            "kind": kind,
            "orchestra": orchestra.pk if orchestra else None,
            "target_agent": target_agent.pk if target_agent else None,
            "priority": task.priority_label,
        },
    )
    task_pending_notify(task)  # wakes a claim waiting for work (agents/claim_wait.py), at commit
    transaction.on_commit(metrics.TASKS_SUBMITTED.inc)
    return task, True


@transaction.atomic
def task_cancel(*, task_id: int, actor: Any, reason: str = "") -> Task:
    """Cancel a pending or running task. Raises ``TaskStateConflict`` otherwise.

    A running task keeps its holder and lease, so the holder learns of it from its next heartbeat
    (or from the 409 of its next extend/complete).
    """
    now = timezone.now()
    # Conditional UPDATE, not read-check-write: a claim can land between the two.
    changed = Task.objects.filter(pk=task_id, status__in=Task.CANCELLABLE).update(
        status=Task.Status.CANCELLED, finished_at=now, updated_at=now
    )
    if not changed:
        status = Task.objects.filter(pk=task_id).values_list("status", flat=True).first()
        raise TaskStateConflict(f"Only unfinished tasks can be cancelled; this one is {status}.")
    TaskAttempt.objects.filter(task_id=task_id, outcome=TaskAttempt.Outcome.RUNNING).update(
        outcome=TaskAttempt.Outcome.CANCELLED, finished_at=now
    )
    task = Task.objects.get(pk=task_id)
    audit.record("task.cancelled", actor=actor, resource=task, details={"reason": reason})
    task_notify(task_id=task_id)
    slot_freed_notify(task)
    hooks.run_task_finished(task)
    transaction.on_commit(lambda: metrics.observe_outcome("cancelled", None))
    return task


@transaction.atomic
def task_retry(*, task_id: int, actor: Any) -> Task:
    """Put a failed or cancelled task back in the queue with a fresh attempt budget.

    ``attempts`` (the count against ``max_attempts``) starts again at 0; ``last_attempt`` does not, so
    the next claim gets a number no earlier holder ever had. Raises ``TaskStateConflict`` for any
    other status.
    """
    now = timezone.now()
    if Task.objects.filter(pk=task_id, workflow__isnull=False).exists():
        raise TaskStateConflict("This task is a workflow step: retry its workflow (workflows/{id}/retry/).")
    changed = Task.objects.filter(pk=task_id, status__in=Task.RETRYABLE).update(
        status=Task.Status.PENDING,
        attempts=0,
        agent=None,
        lease_expires_at=None,
        result=None,
        error="",
        finished_at=None,
        updated_at=now,
    )
    if not changed:
        status = Task.objects.filter(pk=task_id).values_list("status", flat=True).first()
        raise TaskStateConflict(f"Only failed or cancelled tasks can be retried; this one is {status}.")
    task = Task.objects.get(pk=task_id)
    audit.record("task.retried", actor=actor, resource=task)
    task_notify(task_id=task_id)
    task_pending_notify(task)
    return task


@transaction.atomic
def task_delete(*, task_id: int, actor: Any) -> None:
    """Delete a task that is not running, with its attempts; the audit trail keeps its history.

    Raises ``TaskStateConflict`` for a running task (cancel it first: its holder is still working,
    and would find no task to report to) and ``Task.DoesNotExist`` for an unknown id.
    """
    # Locked, so no claim takes it between the check and the delete (claims skip locked rows).
    task = Task.objects.select_for_update().get(pk=task_id)
    if task.status == Task.Status.RUNNING:
        raise TaskStateConflict(f"Task {task} is running: cancel it before deleting it.")
    details = {"kind": task.kind, "status": task.status, "attempts": task.attempts, "orchestra": task.orchestra_id}
    task.delete()
    audit.record("task.deleted", actor=actor, resource_type="agents.task", resource_id=task_id, details=details)
