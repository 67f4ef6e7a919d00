"""What a task's, an agent's and a workflow's console pages show beyond their fields (a fixed number
of queries per page: the lists are bounded)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone

from accounts.access import projects_with
from agents.models import Agent, Task, TaskAttempt, TaskEvent
from audit.models import AuditEvent

MAX_EVENTS = 200
MAX_AUDIT = 100
MAX_CHILDREN = 50
MAX_AGENT_TASKS = 25


def trace_url(traceparent: str) -> tuple[str, str]:
    """The trace id of a W3C ``traceparent`` and its link from ``SYMPHONY_TRACE_URL_TEMPLATE``
    (``{trace_id}`` replaced; empty template: no link). Both empty for a missing or malformed header."""
    parts = (traceparent or "").split("-")
    if len(parts) != 4 or len(parts[1]) != 32:
        return "", ""
    template = settings.SYMPHONY_TRACE_URL_TEMPLATE
    return parts[1], template.replace("{trace_id}", parts[1]) if template else ""


def can_execute(viewer: Any, task: Task) -> bool:
    """Whether ``viewer`` may cancel or retry ``task``: the API's ``agent:execute`` in its project."""
    return task.project_id in projects_with(viewer, "agent:execute")


def _duration(start: Any, end: Any) -> float | None:
    if start is None:
        return None
    return ((end or timezone.now()) - start).total_seconds()


def task_timeline(task: Task, *, viewer: Any) -> dict[str, Any]:
    """Attempts (agent, claim, lease, duration, outcome), events, audit events, trace, family."""
    attempts = list(TaskAttempt.objects.filter(task=task).select_related("agent").order_by("number"))
    rows = []
    for attempt in attempts:
        running = attempt.outcome == TaskAttempt.Outcome.RUNNING
        rows.append(
            {
                "number": attempt.number,
                "agent": attempt.agent,
                "claimed_at": attempt.claimed_at,
                "finished_at": attempt.finished_at,
                "lease_expires_at": task.lease_expires_at if running else None,
                "duration": _duration(attempt.claimed_at, attempt.finished_at),
                "outcome": attempt.outcome,
                "error": task.error if attempt.number == task.last_attempt and not running else "",
            }
        )
    events = list(TaskEvent.objects.filter(task=task).order_by("-seq")[:MAX_EVENTS])[::-1]
    audit = list(
        AuditEvent.objects.filter(resource_type="agents.task", resource_id=str(task.pk)).order_by("-id")[:MAX_AUDIT]
    )[::-1]
    trace_id, link = trace_url(task.traceparent)
    return {
        "task": task,
        "attempts": rows,
        "events": events,
        "audit": audit,
        "trace_id": trace_id,
        "trace_link": link,
        "children": list(Task.objects.filter(parent=task).order_by("id")[:MAX_CHILDREN]),
        "can_execute": can_execute(viewer, task),
        "is_cancellable": task.status in Task.CANCELLABLE,
        "is_retryable": task.status in Task.RETRYABLE,
    }


def agent_tasks(agent: Agent) -> dict[str, Any]:
    """The agent's running tasks and its latest finished ones, and its heartbeat age in seconds."""
    held = Task.objects.filter(agent=agent).select_related("orchestra").order_by("-claimed_at", "-id")
    return {
        "current": list(held.filter(status=Task.Status.RUNNING)[:MAX_AGENT_TASKS]),
        "recent": list(held.exclude(status=Task.Status.RUNNING)[:MAX_AGENT_TASKS]),
        "heartbeat_age": _duration(agent.last_heartbeat_at, None),
    }
