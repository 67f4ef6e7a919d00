"""Submitting, cancelling and retrying workflow runs."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

import audit
from agents.exceptions import OrchestraStateConflict
from agents.models import Orchestra, Task, TaskAttempt, normalize_capabilities
from agents.services import check_json_size
from agents.services.notify import pending_notify
from workflows.exceptions import WorkflowStateConflict
from workflows.models import APPROVAL_KIND, Approval, StepDependency, WorkflowRun
from workflows.validation import validate_dag


def _step_task(step: dict[str, Any], run: WorkflowRun, submitter: Any) -> Task:
    is_approval = step.get("type") == "approval"
    dependencies = len(set(step.get("depends_on", [])))
    status = Task.Status.BLOCKED if dependencies else (
        Task.Status.WAITING_APPROVAL if is_approval else Task.Status.PENDING
    )  # fmt: skip
    return Task(
        project_id=run.project_id,
        kind=APPROVAL_KIND if is_approval else step["kind"],
        input=step.get("input") or {},
        required_capabilities=normalize_capabilities(step.get("required_capabilities") or []),
        priority=step.get("priority", Task.Priority.NORMAL),
        max_attempts=step.get("max_attempts", 3),
        orchestra=run.orchestra,
        submitter=submitter,
        status=status,
        waiting_on=dependencies,
        workflow=run.pk,
        step_key=step["key"],
    )


def _step_approval(step: dict[str, Any], task: Task, run: WorkflowRun, now: Any) -> Approval:
    ready = task.status == Task.Status.WAITING_APPROVAL
    approval = Approval(
        project_id=run.project_id, task=task, run=run, kind=Approval.Kind.STEP,
        status=Approval.Status.PENDING if ready else Approval.Status.BLOCKED,
        approvers=step.get("approvers") or "orchestra:control",
        distinct_from_submitter=step.get("distinct_from_submitter", False),
        timeout_seconds=step.get("timeout_seconds"), question=step.get("question", ""),
        data=step.get("input") or {}, submitter=run.submitter, requested_at=now if ready else None,
    )  # fmt: skip
    if ready and approval.timeout_seconds:
        from datetime import timedelta

        approval.expires_at = now + timedelta(seconds=approval.timeout_seconds)
    return approval


@transaction.atomic
def workflow_submit(
    *, submitter: Any, orchestra: Orchestra, name: str, steps: list[dict[str, Any]], idempotency_key: str | None = None
) -> tuple[WorkflowRun, bool]:
    """Create a run and one task per step; return ``(run, created)``. Steps without dependencies are
    pending (approval steps: waiting_approval) at once, the others blocked.

    A repeated ``idempotency_key`` from the same submitter returns the existing run. Raises
    ``ValidationError`` on ``steps`` naming the step (see ``validate_dag``), ``PayloadTooLarge``, or
    ``OrchestraStateConflict`` for a stopped orchestra; nothing is created then.
    """
    if idempotency_key:
        existing = WorkflowRun.objects.filter(submitter=submitter, idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing, False
    ordered = validate_dag(steps)
    for step in ordered:
        if step.get("type") != "approval" and step.get("kind") == APPROVAL_KIND:
            raise ValidationError({"steps": [f"Step '{step['key']}': kind '{APPROVAL_KIND}' is reserved."]})
        check_json_size(f"steps.{step['key']}.input", step.get("input") or {}, settings.SYMPHONY_TASK_MAX_INPUT_BYTES)
    if orchestra.state == Orchestra.State.STOPPED:
        raise OrchestraStateConflict(f"Orchestra {orchestra.name} is stopped; start it before submitting workflows.")
    has_approvals = any(step.get("type") == "approval" for step in ordered)
    try:
        with transaction.atomic():
            run = WorkflowRun.objects.create(
                project_id=orchestra.project_id,
                name=name, orchestra=orchestra, submitter=submitter, idempotency_key=idempotency_key or "",
                step_count=len(ordered), steps_left=len(ordered), has_approvals=has_approvals,
            )  # fmt: skip
    except IntegrityError:
        existing = WorkflowRun.objects.filter(submitter=submitter, idempotency_key=idempotency_key).first()
        if idempotency_key and existing is not None:
            return existing, False
        raise
    # Created in dependency order, so a step's id is above its dependencies' ids: cancel locks a run's
    # tasks in id order, the same order completions take them in (see workflow_cancel).
    tasks = Task.objects.bulk_create([_step_task(step, run, submitter) for step in ordered], batch_size=500)
    _notify_pending(run, tasks)
    by_key = {task.step_key: task for task in tasks}
    StepDependency.objects.bulk_create(
        [
            StepDependency(run=run, upstream=by_key[dependency], downstream=by_key[step["key"]])
            for step in ordered
            for dependency in set(step.get("depends_on", []))
        ],
        batch_size=1000,
    )
    if has_approvals:
        now = timezone.now()
        approvals = [
            _step_approval(step, by_key[step["key"]], run, now) for step in ordered if step.get("type") == "approval"
        ]
        Approval.objects.bulk_create(approvals)
        for approval in approvals:
            if approval.status == Approval.Status.PENDING:
                audit.record(
                    "approval.requested", actor=submitter, resource=approval, details={"task": approval.task_id}
                )
    audit.record(
        "workflow.submitted",
        actor=submitter,
        resource=run,
        details={"name": name, "orchestra": orchestra.pk, "steps": len(ordered)},
    )
    return run, True


@transaction.atomic
def workflow_cancel(*, run_id: int, actor: Any) -> WorkflowRun:
    """Cancel every unfinished step of a running run. Running steps keep their lease, so their holder's
    next extend or complete answers 409 ``task_cancelled`` (and the heartbeat lists them).

    Lock order: the run's unfinished tasks by id, then the run row; a completion holds its task, then
    takes the run row and then its dependents (higher ids), so the two never wait on each other in a
    cycle. Raises ``WorkflowStateConflict`` (409) when the run already finished.
    """
    unfinished = Task.objects.filter(workflow=run_id).exclude(status__in=Task.FINISHED)
    ids = list(unfinished.select_for_update().order_by("id").values_list("id", flat=True))
    run = WorkflowRun.objects.select_for_update().get(pk=run_id)
    if run.status != WorkflowRun.Status.RUNNING:
        raise WorkflowStateConflict(f"Only running workflows can be cancelled; this one is {run.status}.")
    now = timezone.now()
    who = getattr(actor, "username", "") or "an operator"
    count = (
        Task.objects.filter(pk__in=ids)
        .exclude(status__in=Task.FINISHED)
        .update(status=Task.Status.CANCELLED, error=f"Workflow cancelled by {who}.", finished_at=now, updated_at=now)
    )
    TaskAttempt.objects.filter(task_id__in=ids, outcome=TaskAttempt.Outcome.RUNNING).update(
        outcome=TaskAttempt.Outcome.CANCELLED, finished_at=now
    )
    Approval.objects.filter(task_id__in=ids, status__in=[Approval.Status.BLOCKED, Approval.Status.PENDING]).update(
        status=Approval.Status.CANCELLED, decided_at=now
    )
    run.status, run.finished_at, run.steps_left = WorkflowRun.Status.CANCELLED, now, 0
    run.save(update_fields=["status", "finished_at", "steps_left", "updated_at"])
    audit.record("workflow.cancelled", actor=actor, resource=run, details={"cancelled_tasks": count})
    return run


@transaction.atomic
def workflow_retry(*, run_id: int, actor: Any) -> WorkflowRun:
    """Re-run the failed and cancelled steps (and so what depends on them), keeping succeeded steps and
    their results. Raises ``WorkflowStateConflict`` (409) unless the run failed or was cancelled."""
    run = WorkflowRun.objects.select_for_update().get(pk=run_id)
    if run.status not in (WorkflowRun.Status.FAILED, WorkflowRun.Status.CANCELLED):
        raise WorkflowStateConflict(f"Only failed or cancelled workflows can be retried; this one is {run.status}.")
    steps = {t.pk: t for t in Task.objects.select_for_update().filter(workflow=run.pk, parent__isnull=True)}
    again = [t for t in steps.values() if t.status in (Task.Status.FAILED, Task.Status.CANCELLED)]
    waiting: dict[int, int] = {t.pk: 0 for t in again}
    for up, down in StepDependency.objects.filter(run=run).values_list("upstream_id", "downstream_id"):
        if down in waiting and steps[up].status != Task.Status.SUCCEEDED:
            waiting[down] += 1
    now = timezone.now()
    for task in again:
        task.waiting_on = waiting[task.pk]
        task.status = Task.Status.BLOCKED if task.waiting_on else (
            Task.Status.WAITING_APPROVAL if task.kind == APPROVAL_KIND else Task.Status.PENDING
        )  # fmt: skip
        task.attempts, task.agent, task.lease_expires_at, task.result = 0, None, None, None
        task.error, task.finished_at, task.updated_at, task.resume_context = "", None, now, None
    Task.objects.bulk_update(
        again,
        ["status", "waiting_on", "attempts", "agent", "lease_expires_at", "result", "error", "finished_at",
         "updated_at", "resume_context"],
        batch_size=500,
    )  # fmt: skip
    if run.has_approvals:
        Approval.objects.bulk_create(
            [
                _retry_approval(task, run, now)
                for task in again
                if task.kind == APPROVAL_KIND and _last_step_approval(task)
            ]
        )
    _notify_pending(run, again)
    run.status, run.finished_at, run.steps_left = WorkflowRun.Status.RUNNING, None, len(again)
    run.save(update_fields=["status", "finished_at", "steps_left", "updated_at"])
    audit.record("workflow.retried", actor=actor, resource=run, details={"steps": [t.step_key for t in again][:100]})
    return run


def _notify_pending(run: WorkflowRun, tasks: list[Task]) -> None:
    """Wake the claims waiting for work in the run's orchestra, as many as steps became pending."""
    count = sum(1 for task in tasks if task.status == Task.Status.PENDING)
    if count:
        pending_notify(project_id=run.project_id, orchestra_id=run.orchestra_id, count=count)


def _last_step_approval(task: Task) -> Approval | None:
    task.previous_approval = task.approvals.filter(kind=Approval.Kind.STEP).order_by("-id").first()
    return task.previous_approval


def _retry_approval(task: Task, run: WorkflowRun, now: Any) -> Approval:
    old = task.previous_approval
    step = {
        "approvers": old.approvers, "distinct_from_submitter": old.distinct_from_submitter,
        "timeout_seconds": old.timeout_seconds, "question": old.question, "input": old.data,
    }  # fmt: skip
    return _step_approval(step, task, run, now)
