"""Workflow runs, the dependencies between their steps, and approvals.

A step *is* a task (``Task.workflow`` holds the run's id and ``Task.step_key`` its key), so dispatch
claims, leases and reaps steps like any task; this app only moves them between ``blocked``,
``waiting_approval`` and ``pending`` and settles the run.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from accounts.models import Project
from agents.models import Orchestra, Task

#: The kind of an approval step's task: never claimed (it never becomes pending), reserved.
APPROVAL_KIND = "symphony.approval"


class WorkflowRun(models.Model):
    """One submitted DAG of steps."""

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    project = models.ForeignKey(
        Project, on_delete=models.PROTECT, related_name="workflow_runs",
        help_text="The project of the run: always its orchestra's project.",
    )  # fmt: skip
    name = models.CharField(max_length=200, help_text="What the run is, for people.")
    orchestra = models.ForeignKey(
        Orchestra, on_delete=models.CASCADE, related_name="workflow_runs", help_text="Where its steps run."
    )
    submitter = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="workflow_runs"
    )
    idempotency_key = models.CharField(
        max_length=200, blank=True, default="", help_text="Same key from the same submitter returns the same run."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING, db_index=True)
    step_count = models.PositiveIntegerField(default=0, help_text="Number of steps.")
    steps_left = models.PositiveIntegerField(default=0, help_text="Steps not finished yet (the run settles at 0).")
    has_approvals = models.BooleanField(default=False, help_text="Whether some step is an approval step.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["running", "succeeded", "failed", "cancelled"]), name="workflow_status_valid"
            ),
            models.UniqueConstraint(
                fields=["submitter", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="workflow_idempotency_key_unique_per_submitter",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} #{self.pk}"


class StepDependency(models.Model):
    """``downstream`` waits until ``upstream`` succeeded (both steps of ``run``)."""

    run = models.ForeignKey(WorkflowRun, on_delete=models.CASCADE, related_name="dependencies")
    upstream = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="+")
    downstream = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["upstream", "downstream"], name="step_dependency_unique")]
        indexes = [models.Index(fields=["downstream"], name="step_dependency_down_idx")]

    def __str__(self) -> str:
        return f"task {self.downstream_id} after task {self.upstream_id}"


class Approval(models.Model):
    """A human decision: for an approval step, or asked mid-task by the agent holding a task."""

    class Kind(models.TextChoices):
        STEP = "step"
        MID_TASK = "mid_task"

    class Status(models.TextChoices):
        BLOCKED = "blocked"  # an approval step whose dependencies have not all succeeded: not asked yet
        PENDING = "pending"
        APPROVED = "approved"
        REJECTED = "rejected"
        EXPIRED = "expired"
        CANCELLED = "cancelled"

    project = models.ForeignKey(
        Project, on_delete=models.PROTECT, related_name="approvals", help_text="The project of its task."
    )
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="approvals")
    run = models.ForeignKey(WorkflowRun, on_delete=models.CASCADE, null=True, blank=True, related_name="approvals")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    approvers = models.CharField(
        max_length=64, default="orchestra:control", help_text="Permission code a decider must hold in the project."
    )
    distinct_from_submitter = models.BooleanField(
        default=False, help_text="The run's (or task's) submitter may not decide."
    )
    timeout_seconds = models.PositiveIntegerField(null=True, blank=True, help_text="Undecided after this: fails.")
    question = models.TextField(blank=True, max_length=5000)
    data = models.JSONField(default=dict, blank=True)
    submitter = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    requested_by_agent = models.CharField(max_length=100, blank=True, help_text="The agent that asked (mid-task).")
    requested_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    comment = models.TextField(blank=True, max_length=5000)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["expires_at"], condition=Q(status="pending"), name="approval_expiry_idx"),
            models.Index(fields=["status", "created_at"], name="approval_status_idx"),
        ]

    def __str__(self) -> str:
        return f"approval #{self.pk} ({self.status})"


# Schedules live in their own modules; importing them here registers them with the app.
from workflows.scheduling.models import Schedule, ScheduleFiring  # noqa: E402, F401
