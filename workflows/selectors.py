"""Reads of workflows and approvals."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from agents.models import Task
from workflows.models import APPROVAL_KIND, Approval, StepDependency, WorkflowRun


def workflow_list() -> QuerySet[WorkflowRun]:
    """Runs, newest first, with their submitter."""
    return WorkflowRun.objects.select_related("submitter", "project").order_by("-created_at", "-id")


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


def approval_list() -> QuerySet[Approval]:
    return Approval.objects.select_related("task", "submitter", "decided_by", "project").order_by("-created_at", "-id")


def approval_get(*, approval_id: int) -> Any:
    return approval_list().get(pk=approval_id)
