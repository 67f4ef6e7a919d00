"""Step transitions, run inside the transaction of the completion or failure that causes them.

Statements per transition are bounded whatever the run's size (pinned in tests): lock the run row,
one UPDATE over the finished step's direct dependents, one UPDATE of the run's counter, plus the
audit event. Locking the run row serialises its transitions, so two parents finishing at once
cannot both see the other unfinished (the child would never start) or both start the child; each
dependent's ``waiting_on`` counter is decremented by a row-locking UPDATE for the same reason.
"""

from __future__ import annotations

from django.db import connection
from django.db.models import Case, F, Value, When
from django.utils import timezone

import audit
from agents.models import Task
from agents.services.notify import pending_notify
from workflows.models import APPROVAL_KIND, Approval, StepDependency, WorkflowRun


def on_task_finished(task: Task) -> None:
    """``agents.hooks`` callback: a step finished for good. Children of steps are counted by their parent."""
    if task.parent_id is not None:
        return
    run = WorkflowRun.objects.select_for_update(of=("self",)).select_related("project").filter(pk=task.workflow).first()
    if run is None or run.status != WorkflowRun.Status.RUNNING:
        return  # cancelled meanwhile: a completion that lost the race changes nothing else
    finished = 1
    if task.status == Task.Status.SUCCEEDED:
        _unblock(task, run)
    else:
        finished += cancel_dependents(task, run)
    run.steps_left = max(run.steps_left - finished, 0)
    if run.steps_left == 0:
        settle(run)
    else:
        WorkflowRun.objects.filter(pk=run.pk).update(steps_left=run.steps_left)


def _unblock(task: Task, run: WorkflowRun) -> None:
    now = timezone.now()
    downstream = StepDependency.objects.filter(upstream_id=task.pk).values("downstream_id")
    ready = Case(When(kind=APPROVAL_KIND, then=Value(Task.Status.WAITING_APPROVAL)), default=Value(Task.Status.PENDING))
    touched = Task.objects.filter(pk__in=downstream, status=Task.Status.BLOCKED).update(
        status=Case(When(waiting_on__lte=1, then=ready), default=F("status")),
        waiting_on=F("waiting_on") - 1,
        updated_at=now,
    )
    if not touched:
        return
    # Some of them may still wait on other steps: an upper bound of the waiters worth waking.
    pending_notify(project_id=run.project_id, orchestra_id=run.orchestra_id, count=touched)
    audit.record(
        "workflow.steps_unblocked",
        resource=run,
        details={"step": task.step_key, "task": task.pk, "dependents": touched},
    )
    if run.has_approvals:
        from workflows.services.approvals import approvals_activate

        approvals_activate(task_ids=downstream, now=now)


def _downstream_sql() -> tuple[str, str]:
    edges = StepDependency._meta.db_table
    return (
        f"WITH RECURSIVE down(id) AS (SELECT downstream_id FROM {edges} WHERE upstream_id = %s"  # noqa: S608
        f" UNION SELECT e.downstream_id FROM {edges} e JOIN down ON e.upstream_id = down.id) SELECT id FROM down",
        Task._meta.db_table,
    )


def cancel_dependents(task: Task, run: WorkflowRun) -> int:
    """Cancel every unstarted step depending on ``task``, directly or not (one statement); return how many."""
    down, tasks = _downstream_sql()
    now = timezone.now()
    error = f"Cancelled: step '{task.step_key}' {task.status}."
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {tasks} SET status = %s, error = %s, finished_at = %s, updated_at = %s"  # noqa: S608
            f" WHERE id IN ({down}) AND status IN (%s, %s, %s)",
            [Task.Status.CANCELLED, error, now, now, task.pk, Task.Status.BLOCKED, Task.Status.PENDING,
             Task.Status.WAITING_APPROVAL],
        )  # fmt: skip
        count = cursor.rowcount
    if count:
        if run.has_approvals:
            Approval.objects.filter(
                task__workflow=run.pk, task__status=Task.Status.CANCELLED,
                status__in=[Approval.Status.BLOCKED, Approval.Status.PENDING],
            ).update(status=Approval.Status.CANCELLED)  # fmt: skip
        audit.record(
            "workflow.steps_cancelled",
            resource=run,
            details={"step": task.step_key, "task": task.pk, "status": task.status, "cancelled": count},
        )
    return count


def settle(run: WorkflowRun) -> None:
    """Every step finished: the run succeeded if all of them did, else failed (once per run)."""
    bad = Task.objects.filter(workflow=run.pk, parent__isnull=True).exclude(status=Task.Status.SUCCEEDED).exists()
    run.status = WorkflowRun.Status.FAILED if bad else WorkflowRun.Status.SUCCEEDED
    run.finished_at, run.steps_left = timezone.now(), 0
    run.save(update_fields=["status", "finished_at", "steps_left", "updated_at"])
    audit.record(f"workflow.{run.status}", resource=run, details={"steps": run.step_count})


def add_upstream(tasks: list[Task]) -> None:
    """``agents.hooks`` claim enricher: ``upstream``, the results of each step's dependencies by key."""
    steps = [task for task in tasks if task.workflow is not None and task.parent_id is None]
    if not steps:
        return
    rows = StepDependency.objects.filter(downstream_id__in=[t.pk for t in steps]).values_list(
        "downstream_id", "upstream__step_key", "upstream__result"
    )
    upstream: dict[int, dict] = {}
    for downstream_id, key, result in rows:
        upstream.setdefault(downstream_id, {})[key] = result
    for task in steps:
        extra = getattr(task, "claim_extra", None) or {}
        extra["upstream"] = upstream.get(task.pk, {})
        task.claim_extra = extra
