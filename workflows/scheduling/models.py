"""A schedule fires a task or a workflow run; each firing is recorded."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from agents.models import Orchestra, Task


class Schedule(models.Model):
    """A task or workflow body submitted into ``orchestra`` on a cron expression or every N seconds."""

    class Overlap(models.TextChoices):
        SKIP = "skip"
        ALLOW = "allow"

    project = models.ForeignKey(
        "accounts.Project",
        on_delete=models.PROTECT,
        related_name="schedules",
        help_text="The project of the schedule: always its orchestra's.",
    )
    orchestra = models.ForeignKey(
        Orchestra, on_delete=models.CASCADE, related_name="schedules", help_text="Where the fired work runs."
    )
    name = models.CharField(max_length=200, help_text="Name of the schedule, unique in its project.")
    cron = models.CharField(
        max_length=200, blank=True, default="", help_text="Five-field cron expression (empty with interval_seconds)."
    )
    interval_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="Fire every N seconds (instead of cron)."
    )
    timezone = models.CharField(max_length=64, default="UTC", help_text="IANA time zone the cron expression reads in.")
    task = models.JSONField(null=True, blank=True, help_text="Task body fired (kind, input, ...), or null.")
    workflow = models.JSONField(null=True, blank=True, help_text="Workflow body fired (name, steps), or null.")
    enabled = models.BooleanField(default=True, db_index=True, help_text="Paused schedules never fire on their own.")
    overlap = models.CharField(
        max_length=8,
        choices=Overlap.choices,
        default=Overlap.SKIP,
        help_text="skip: no firing while the previous firing's task or run is unfinished.",
    )
    next_fire_at = models.DateTimeField(
        null=True, blank=True, help_text="When the scheduler fires it next (null while paused)."
    )
    last_fired_at = models.DateTimeField(null=True, blank=True, help_text="When it last made a task or run.")
    last_task = models.ForeignKey(
        Task, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", help_text="Task of the last firing."
    )
    last_run = models.ForeignKey(
        "workflows.WorkflowRun",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Workflow run of the last firing.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="schedules",
        help_text="Who created it: the submitter of what it fires.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "workflows"
        ordering = ["name", "id"]
        indexes = [
            # The scheduler's due query: enabled rows by next_fire_at.
            models.Index(fields=["next_fire_at"], condition=Q(enabled=True), name="schedule_due_idx"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="schedule_name_unique_per_project"),
            models.CheckConstraint(
                condition=(Q(cron="") & Q(interval_seconds__isnull=False))
                | (~Q(cron="") & Q(interval_seconds__isnull=True)),
                name="schedule_cron_xor_interval",
            ),
            models.CheckConstraint(
                condition=(Q(task__isnull=True) & Q(workflow__isnull=False))
                | (Q(task__isnull=False) & Q(workflow__isnull=True)),
                name="schedule_task_xor_workflow",
            ),
            models.CheckConstraint(condition=Q(overlap__in=["skip", "allow"]), name="schedule_overlap_valid"),
            models.CheckConstraint(
                condition=Q(interval_seconds__isnull=True) | Q(interval_seconds__gte=1),
                name="schedule_interval_positive",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def target(self) -> str:
        return "task" if self.task is not None else "workflow"


class ScheduleFiring(models.Model):
    """One firing of a schedule: what it made, or why it made nothing."""

    class Outcome(models.TextChoices):
        FIRED = "fired"
        SKIPPED = "skipped"  # overlap=skip and the previous firing's work was unfinished
        FAILED = "failed"  # the submission was refused (e.g. the orchestra is stopped)

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule"
        MANUAL = "manual"

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="firings")
    scheduled_for = models.DateTimeField(help_text="The tick this firing is for (the earliest missed one).")
    fired_at = models.DateTimeField(help_text="When the scheduler acted.")
    trigger = models.CharField(max_length=8, choices=Trigger.choices, default=Trigger.SCHEDULE)
    outcome = models.CharField(max_length=8, choices=Outcome.choices)
    missed = models.PositiveIntegerField(
        default=0, help_text="Ticks after scheduled_for that had passed too and were folded into this firing."
    )
    task = models.ForeignKey(Task, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    run = models.ForeignKey("workflows.WorkflowRun", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    detail = models.CharField(max_length=500, blank=True, default="", help_text="Why it was skipped or failed.")

    class Meta:
        app_label = "workflows"
        ordering = ["-fired_at", "-id"]
        indexes = [models.Index(fields=["schedule", "-fired_at"], name="firing_schedule_idx")]
        constraints = [
            models.CheckConstraint(
                condition=Q(outcome__in=["fired", "skipped", "failed"]), name="firing_outcome_valid"
            ),
            # The tick claim already makes a tick fire once; this makes a double firing impossible.
            models.UniqueConstraint(
                fields=["schedule", "scheduled_for"],
                condition=Q(trigger="schedule"),
                name="firing_once_per_tick",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.schedule_id}@{self.scheduled_for:%Y-%m-%d %H:%M:%S} {self.outcome}"
