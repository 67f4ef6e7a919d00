"""Reads of workflows and approvals."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from accounts.access import scope
from agents.models import Task
from workflows.models import APPROVAL_KIND, Approval, StepDependency, WorkflowRun


def workflow_list(*, viewer: Any = None, code: str = "agent:read") -> QuerySet[WorkflowRun]:
    """Runs, newest first, with their submitter; with ``viewer``, only those of projects where it holds ``code``."""
    queryset = WorkflowRun.objects.select_related("submitter", "project").order_by("-created_at", "-id")
    return queryset if viewer is None else scope(queryset, viewer, code)


def workflow_steps(run: WorkflowRun) -> list[Task]:
    """The run's steps in creation (dependency) order, each with ``depends_on`` keys and ``type`` (two queries)."""
    steps = list(Task.objects.filter(workflow=run.pk, parent__isnull=True).order_by("id"))
    depends: dict[int, list[str]] = {}
    for downstream, key in StepDependency.objects.filter(run=run).values_list("downstream_id", "upstream__step_key"):
        depends.setdefault(downstream, []).append(key)
    for step in steps:
        step.depends_on = sorted(depends.get(step.pk, []))
        step.type = "approval" if step.kind == APPROVAL_KIND else "task"
    return steps


def approval_list(*, viewer: Any = None, code: str = "agent:read") -> QuerySet[Approval]:
    """Approvals, newest first; with ``viewer``, only those of projects where it holds ``code``."""
    queryset = Approval.objects.select_related("task", "submitter", "decided_by", "project").order_by(
        "-created_at", "-id"
    )
    return queryset if viewer is None else scope(queryset, viewer, code)


def approval_get(*, approval_id: int) -> Any:
    return approval_list().get(pk=approval_id)
