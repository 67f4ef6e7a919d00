"""Child tasks: created by the holder of a task, cancelled with it, awaited by ``wait_for_children``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

import audit
from agents import hooks
from agents.models import Task, normalize_capabilities

#: Most children one request may create.
MAX_CHILDREN_PER_REQUEST = 1000


@transaction.atomic
def task_children_create(*, task_id: int, agent: Any, attempt: int, children: list[dict[str, Any]]) -> list[Task]:
    """Create child tasks of ``task_id`` for its holder: same orchestra (or target agent), workflow and
    submitter as the parent. Raises ``LeaseLost``/``TaskCancelled`` (409) or ``NotTaskHolder`` (403)."""
    from agents.services.dispatch import _holder_filter, _lease_error
    from agents.services.tasks import check_json_size

    parent = _holder_filter(task_id=task_id, agent=agent, attempt=attempt).select_for_update().first()
    if parent is None:
        raise _lease_error(task_id=task_id, agent=agent)
    rows = []
    for body in children:
        check_json_size("input", body.get("input") or {}, settings.SYMPHONY_TASK_MAX_INPUT_BYTES)
        rows.append(
            Task(
                project_id=parent.project_id,
                kind=body["kind"],
                input=body.get("input") or {},
                required_capabilities=normalize_capabilities(body.get("required_capabilities") or []),
                priority=body.get("priority", parent.priority),
                max_attempts=body.get("max_attempts", 3),
                orchestra_id=parent.orchestra_id,
                target_agent_id=parent.target_agent_id,
                submitter_id=parent.submitter_id,
                traceparent=parent.traceparent,
                parent=parent,
                workflow=parent.workflow,
                step_key=parent.step_key,
            )
        )
    created = Task.objects.bulk_create(rows)
    if created:
        from agents.services.notify import pending_notify

        orchestra_id = None if parent.target_agent_id else parent.orchestra_id
        pending_notify(project_id=parent.project_id, orchestra_id=orchestra_id, agent_id=parent.target_agent_id,
                       count=len(created))  # fmt: skip
    audit.record(
        "task.children_created",
        resource=parent,
        details={"agent": agent.name, "attempt": attempt, "children": [t.pk for t in created][:100],
                 "count": len(created)},
    )  # fmt: skip
    return created


def parent_complete(*, task: Task, now: datetime) -> None:
    """After a ``wait_for_children`` completion: wait while children are unfinished, else attach their results.

    The parent row is locked by the completion's UPDATE; a child finishing concurrently locks it too
    (``child_finished``), so the count read here and the child's decrement never miss each other.
    """
    unfinished = task.children.exclude(status__in=Task.FINISHED).count()
    if unfinished:
        task.status, task.waiting_on, task.finished_at = Task.Status.WAITING, unfinished, None
        Task.objects.filter(pk=task.pk).update(status=task.status, waiting_on=unfinished, finished_at=None)
        return
    _finish_parent(parent=task, now=now)


def _finish_parent(*, parent: Task, now: datetime) -> None:
    children = list(parent.children.order_by("id").values("id", "kind", "status", "result", "error"))
    bad = next((child for child in children if child["status"] != Task.Status.SUCCEEDED), None)
    result = parent.result if isinstance(parent.result, dict) else {"result": parent.result}
    parent.result = {**result, "children_results": children}
    if bad is None:
        parent.status, parent.error = Task.Status.SUCCEEDED, ""
    else:
        parent.status = Task.Status.FAILED
        parent.error = f"Child task {bad['id']} ({bad['kind']}) {bad['status']}: {bad['error']}"[:10000]
    parent.finished_at, parent.waiting_on = now, 0
    Task.objects.filter(pk=parent.pk).update(
        status=parent.status, result=parent.result, error=parent.error, finished_at=now, waiting_on=0, updated_at=now
    )


def child_finished(*, task: Task) -> None:
    """A child finished for good: count it off its waiting parent, and finish the parent after the last one."""
    # Lock the parent whatever its status: a parent still running may be completing with
    # wait_for_children right now, and its count of unfinished children must wait for this commit
    # (filtering on WAITING here let that count include this child after this check had passed).
    parent = Task.objects.select_for_update().filter(pk=task.parent_id).first()
    if parent is None or parent.status != Task.Status.WAITING:
        return
    parent.waiting_on = max(parent.waiting_on - 1, 0)
    if parent.waiting_on:
        Task.objects.filter(pk=parent.pk).update(waiting_on=parent.waiting_on)
        return
    _finish_parent(parent=parent, now=timezone.now())
    audit.record(
        "task.completed" if parent.status == Task.Status.SUCCEEDED else "task.failed",
        resource=parent,
        details={"children_finished": True},
    )
    hooks.run_task_finished(parent)


def children_cancel(*, task: Task) -> int:
    """Cancel every unfinished descendant of a cancelled task (one statement per level); return how many."""
    now = timezone.now()
    ids: list[int] = [task.pk]
    count = 0
    while ids:  # one level per round: children trees are shallow
        level = list(Task.objects.filter(parent_id__in=ids).values_list("id", flat=True))
        if not level:
            break
        count += Task.objects.filter(Q(pk__in=level) & ~Q(status__in=Task.FINISHED)).update(
            status=Task.Status.CANCELLED,
            error=f"Parent task {task.pk} was cancelled.",
            finished_at=now,
            updated_at=now,
        )
        ids = level
    if count:
        audit.record("task.cancelled", resource=task, details={"children_cancelled": count})
    return count
