"""Hook points for the apps above agents (workflows): dispatch calls them, it never imports them.

Apps register from their ``AppConfig.ready()``. Every hook runs inside the transaction of the change
that causes it, so what a hook writes commits or rolls back with that change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agents.models import Task

#: Called with a task that just finished for good (succeeded, failed or cancelled; not a requeue).
task_finished: list[Callable[[Task], None]] = []
#: Called with the tasks of a claim (already leased); may set ``task.claim_extra`` (a dict merged into
#: the task's claim payload, e.g. ``upstream``).
claim_enrichers: list[Callable[[list[Task]], None]] = []


def register_task_finished(callback: Callable[[Task], None]) -> None:
    """Run ``callback(task)`` whenever a task finishes for good (idempotent registration)."""
    if callback not in task_finished:
        task_finished.append(callback)


def register_claim_enricher(callback: Callable[[list[Task]], None]) -> None:
    """Run ``callback(tasks)`` on every non-empty claim (idempotent registration)."""
    if callback not in claim_enrichers:
        claim_enrichers.append(callback)


def run_task_finished(task: Task) -> None:
    """Children bookkeeping (agents' own), then every registered callback. Costs nothing for a plain task."""
    if task.workflow is None and task.parent_id is None and task.status != "cancelled":
        return
    from agents.services.children import child_finished, children_cancel

    if task.status == "cancelled":
        children_cancel(task=task)
    if task.parent_id is not None:
        child_finished(task=task)
    if task.workflow is not None:
        for callback in task_finished:
            callback(task)


def run_claim_enrichers(tasks: list[Task]) -> None:
    if not any(task.workflow is not None or task.resume_context for task in tasks):
        return
    for task in tasks:
        if task.resume_context:
            task.claim_extra = dict(task.resume_context)
    for callback in claim_enrichers:
        callback(tasks)


#: Sweeps run by ``manage.py reap_tasks`` (and any scheduler) after reaping leases; each returns a count.
periodic: list[Callable[[], int]] = []


def register_periodic(callback: Callable[[], int]) -> None:
    """Run ``callback()`` from the periodic sweep (idempotent registration)."""
    if callback not in periodic:
        periodic.append(callback)


def run_periodic() -> int:
    return sum(callback() for callback in periodic)
