"""Writes on schedules, each audited in its own transaction; the firing itself is shared with the tick."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.exceptions import APIException

import audit
from agents.models import Task
from agents.services import task_submit
from workflows.exceptions import ScheduleOverlap
from workflows.models import WorkflowRun
from workflows.scheduling import timing
from workflows.scheduling.models import Schedule, ScheduleFiring

#: Fields a PATCH may change; changing one of TIMING recomputes next_fire_at.
EDITABLE = ("orchestra", "name", "cron", "interval_seconds", "timezone", "task", "workflow", "enabled", "overlap")
TIMING = ("cron", "interval_seconds", "timezone", "enabled")


def _check(schedule: Schedule) -> None:
    """The rules across fields. Raises ``ValidationError`` naming the field."""
    if bool(schedule.cron) == bool(schedule.interval_seconds):
        raise ValidationError({"cron": ["Give exactly one of cron and interval_seconds."]})
    if (schedule.task is None) == (schedule.workflow is None):
        raise ValidationError({"task": ["Give exactly one of task and workflow."]})
    try:
        timing.parse_timezone(schedule.timezone)
    except ValueError as error:
        raise ValidationError({"timezone": [str(error)]}) from None


def _plan(schedule: Schedule, now: datetime) -> None:
    schedule.next_fire_at = (
        timing.next_after(
            cron=schedule.cron, interval_seconds=schedule.interval_seconds, timezone=schedule.timezone, after=now
        )
        if schedule.enabled
        else None
    )


def _save_new(schedule: Schedule) -> None:
    try:
        with transaction.atomic():
            schedule.save(force_insert=True)
    except IntegrityError:
        raise ValidationError({"name": ["A schedule with this name already exists in the project."]}) from None


@transaction.atomic
def schedule_create(*, actor: Any, **fields: Any) -> Schedule:
    """Create a schedule (fields as in ``EDITABLE``); its project is its orchestra's.

    Raises ``ValidationError`` naming the field (cron xor interval_seconds, task xor workflow, time zone,
    a name taken in the project).
    """
    schedule = Schedule(created_by=actor, **fields)
    schedule.project_id = schedule.orchestra.project_id
    _check(schedule)
    _plan(schedule, timezone.now())
    _save_new(schedule)
    audit.record("schedule.created", actor=actor, resource=schedule, details=_summary(schedule))
    return schedule


@transaction.atomic
def schedule_update(*, schedule_id: int, actor: Any, changes: dict[str, Any]) -> Schedule:
    """Apply ``changes`` (a subset of ``EDITABLE``); timing changes recompute ``next_fire_at``.

    Giving ``cron`` clears ``interval_seconds`` and the reverse, likewise ``task`` and ``workflow``.
    Raises ``ValidationError`` naming the field.
    """
    schedule = Schedule.objects.select_for_update().get(pk=schedule_id)
    if changes.get("cron"):
        schedule.interval_seconds = None
    if changes.get("interval_seconds"):
        schedule.cron = ""
    if changes.get("task") is not None:
        schedule.workflow = None
    if changes.get("workflow") is not None:
        schedule.task = None
    for name, value in changes.items():
        setattr(schedule, name, value)
    if "orchestra" in changes and schedule.orchestra.project_id != schedule.project_id:
        raise ValidationError({"orchestra": ["The orchestra belongs to another project."]})
    _check(schedule)
    if any(name in changes for name in TIMING):
        _plan(schedule, timezone.now())
    try:
        with transaction.atomic():
            schedule.save()
    except IntegrityError:
        raise ValidationError({"name": ["A schedule with this name already exists in the project."]}) from None
    audit.record("schedule.updated", actor=actor, resource=schedule, details={"fields": sorted(changes)})
    return schedule


@transaction.atomic
def schedule_delete(*, schedule_id: int, actor: Any) -> None:
    """Delete a schedule and its firing history (the tasks and runs it made stay)."""
    schedule = Schedule.objects.select_for_update().get(pk=schedule_id)
    audit.record("schedule.deleted", actor=actor, resource=schedule, details=_summary(schedule))
    schedule.delete()


@transaction.atomic
def schedule_pause(*, schedule_id: int, actor: Any) -> Schedule:
    """Stop firing on its own (run-now still works). Pausing a paused schedule changes nothing."""
    schedule = Schedule.objects.select_for_update().get(pk=schedule_id)
    if schedule.enabled:
        schedule.enabled, schedule.next_fire_at = False, None
        schedule.save(update_fields=["enabled", "next_fire_at", "updated_at"])
        audit.record("schedule.paused", actor=actor, resource=schedule)
    return schedule


@transaction.atomic
def schedule_resume(*, schedule_id: int, actor: Any) -> Schedule:
    """Fire again from the next tick after now: ticks that passed while paused are not fired."""
    schedule = Schedule.objects.select_for_update().get(pk=schedule_id)
    if not schedule.enabled:
        schedule.enabled = True
        _plan(schedule, timezone.now())
        schedule.save(update_fields=["enabled", "next_fire_at", "updated_at"])
        audit.record("schedule.resumed", actor=actor, resource=schedule, details={"next_fire_at": _iso(schedule)})
    return schedule


@transaction.atomic
def schedule_run_now(*, schedule_id: int, actor: Any) -> ScheduleFiring:
    """Fire once now, outside the timetable (``next_fire_at`` is kept; paused schedules too).

    Raises ``ScheduleOverlap`` (409) with overlap=skip while the previous firing's work is unfinished,
    ``ValidationError`` / the submission's own errors when the task or run is refused (nothing is written).
    """
    schedule = Schedule.objects.select_for_update(of=("self",)).select_related("orchestra").get(pk=schedule_id)
    busy = unfinished_work(schedule)
    if busy:
        raise ScheduleOverlap(f"The previous firing's {busy} is unfinished and the schedule's overlap is 'skip'.")
    now = timezone.now()
    firing = ScheduleFiring(
        schedule=schedule, scheduled_for=now, fired_at=now, trigger=ScheduleFiring.Trigger.MANUAL
    )  # fmt: skip
    submit(schedule, firing, idempotency_key=None)
    firing.outcome = ScheduleFiring.Outcome.FIRED
    firing.save(force_insert=True)
    _remember(schedule, firing)
    audit.record("schedule.fired", actor=actor, resource=schedule, details=_firing_details(firing))
    return firing


# --- firing (shared by run-now and the scheduler's tick) --------------------------------------------


def unfinished_work(schedule: Schedule) -> str:
    """With overlap=skip, what of the previous firing is unfinished ('task #3' / 'run #4'), else ''."""
    if schedule.overlap != Schedule.Overlap.SKIP:
        return ""
    if schedule.last_task_id is not None:
        status = Task.objects.filter(pk=schedule.last_task_id).values_list("status", flat=True).first()
        if status is not None and status not in Task.FINISHED:
            return f"task #{schedule.last_task_id}"
    if schedule.last_run_id is not None:
        status = WorkflowRun.objects.filter(pk=schedule.last_run_id).values_list("status", flat=True).first()
        if status == WorkflowRun.Status.RUNNING:
            return f"run #{schedule.last_run_id}"
    return ""


def submit(schedule: Schedule, firing: ScheduleFiring, *, idempotency_key: str | None) -> None:
    """Submit the schedule's task or workflow as its creator; set ``firing.task`` / ``firing.run``.

    Raises what ``task_submit`` / ``workflow_submit`` raise (nothing is written then).
    """
    from workflows.services import workflow_submit  # the runs service sits beside this module

    if schedule.task is not None:
        task, _ = task_submit(
            submitter=schedule.created_by, orchestra=schedule.orchestra, idempotency_key=idempotency_key,
            **schedule.task,
        )  # fmt: skip
        firing.task = task
    else:
        body = schedule.workflow
        run, _ = workflow_submit(
            submitter=schedule.created_by, orchestra=schedule.orchestra, name=body.get("name") or schedule.name,
            steps=body["steps"], idempotency_key=idempotency_key,
        )  # fmt: skip
        firing.run = run


def _remember(schedule: Schedule, firing: ScheduleFiring) -> None:
    schedule.last_fired_at = firing.fired_at
    schedule.last_task, schedule.last_run = firing.task, firing.run
    schedule.save(update_fields=["last_fired_at", "last_task", "last_run", "next_fire_at", "updated_at"])


def refusal(error: Exception) -> str:
    """A short text of why a submission was refused, for the firing's ``detail``."""
    if isinstance(error, ValidationError):
        text = "; ".join(f"{k}: {' '.join(map(str, v))}" for k, v in error.message_dict.items())
    elif isinstance(error, APIException):
        text = f"{error.get_codes()}: {error.detail}"
    else:
        text = str(error)
    return text[:500]


def _iso(schedule: Schedule) -> str | None:
    return schedule.next_fire_at.isoformat() if schedule.next_fire_at else None


def _summary(schedule: Schedule) -> dict[str, Any]:
    return {
        "name": schedule.name, "orchestra": schedule.orchestra_id, "cron": schedule.cron,
        "interval_seconds": schedule.interval_seconds, "timezone": schedule.timezone, "target": schedule.target,
        "enabled": schedule.enabled, "overlap": schedule.overlap,
    }  # fmt: skip


def _firing_details(firing: ScheduleFiring) -> dict[str, Any]:
    return {
        "firing": firing.pk, "trigger": firing.trigger, "outcome": firing.outcome,
        "scheduled_for": firing.scheduled_for.isoformat(), "missed": firing.missed,
        "task": firing.task_id, "run": firing.run_id, "detail": firing.detail,
    }  # fmt: skip
