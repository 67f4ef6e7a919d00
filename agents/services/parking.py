"""Parking a task while a human decides, and resuming it with the decision."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from agents.models import Agent, Task, TaskAttempt


@transaction.atomic
def task_park(*, task_id: int, agent: Agent, attempt: int) -> Task:
    """The holder releases its lease and the task waits in ``waiting_approval``; the attempt it used is
    given back (a question is not a failure). Raises ``LeaseLost``/``TaskCancelled`` (409) or
    ``NotTaskHolder`` (403)."""
    from agents.services.dispatch import _finish_attempt, _holder_filter, _lease_error

    now = timezone.now()
    if not _holder_filter(task_id=task_id, agent=agent, attempt=attempt).update(
        status=Task.Status.WAITING_APPROVAL, lease_expires_at=None, agent=None, attempts=F("attempts") - 1,
        updated_at=now,
    ):  # fmt: skip
        raise _lease_error(task_id=task_id, agent=agent)
    _finish_attempt(task_id=task_id, attempt=attempt, outcome=TaskAttempt.Outcome.PARKED, now=now)
    return Task.objects.select_related("submitter").get(pk=task_id)


def task_resume(*, task_id: int, context: dict[str, Any]) -> bool:
    """A parked task goes back to ``pending``; its next claim carries ``context``. False if not parked."""
    from agents.services.notify import task_pending_notify

    resumed = Task.objects.filter(pk=task_id, status=Task.Status.WAITING_APPROVAL).update(
        status=Task.Status.PENDING, resume_context=context, updated_at=timezone.now()
    )
    if resumed:
        fields = ("project_id", "orchestra_id", "target_agent_id", "required_capabilities")
        task_pending_notify(Task.objects.only(*fields).get(pk=task_id))
    return bool(resumed)
